"""The rule catalog: ``rules/PGxxx.toml`` files loaded, validated and served as ``Rule`` objects.

Why data files instead of code: the catalog is what reviewers and submitters read
(``golf-check --explain PG101``), what SARIF consumers show next to a result, and — through
the examples — the fixtures that prove each rule fires on its illegal shape and stays quiet on
its legal fix. Keeping it as one TOML file per rule lets the helper who writes a rule family
own its entries. The files are read through ``importlib.resources`` so an installed wheel works
the same as a checkout. A malformed file is a packaging bug, reported in one line naming the
file and the key, never a traceback.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

from harness.errors import EXIT_USAGE, HarnessError
from harness.findings import Finding, Severity, Step

RULE_ID_PATTERN = re.compile(r"PG\d{3}")
RULE_NAME_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
CHECK_KINDS = ("static", "runtime")
EXAMPLE_KINDS = ("illegal", "legal")
CHALLENGE_REPOSITORY = "https://github.com/openai/parameter-golf"

_TEXT_KEYS = ("id", "name", "title", "severity", "flags", "why", "fix")
_LIST_KEYS = ("sources", "checks")
_ALLOWED_KEYS = frozenset(_TEXT_KEYS + _LIST_KEYS + ("examples", "lowered"))
_EXAMPLE_KEYS = ("kind", "title", "file", "code")
_LOWERED_KEYS = ("when", "severity", "why")


class CatalogError(HarnessError):
    """A rule file is missing, malformed or inconsistent: the installation is broken."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Example:
    """A minimal program showing the rule's illegal shape or its legal fix.

    ``file`` is the name the code is checked under (``train_gpt.py``, ``submission.json``…);
    examples whose ``file`` ends in ``.py`` double as checker fixtures.
    """

    kind: str
    title: str
    file: str
    code: str


@dataclass(frozen=True)
class Lowered:
    """A named situation in which the rule reports below its own severity (a helper file that
    does not parse, code the documented run never executes): stated on the rule's page so
    that a reader sees every severity a finding of the rule can carry, and why."""

    when: str
    severity: Severity
    why: str


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    title: str
    severity: Severity
    flags: str
    why: str
    sources: tuple[str, ...]
    checks: tuple[str, ...]
    fix: str
    examples: tuple[Example, ...]
    lowered: tuple[Lowered, ...] = ()

    @property
    def severities(self) -> frozenset[Severity]:
        """Every severity a finding of this rule may carry."""
        return frozenset({self.severity, *(item.severity for item in self.lowered)})

    def severity_when(self, when: str | None) -> Severity:
        """The rule's severity, or the one its page declares for the situation ``when``; an
        undeclared situation is a bug of the detector, named in one line."""
        if when is None:
            return self.severity
        for item in self.lowered:
            if item.when == when:
                return item.severity
        raise CatalogError(f"{self.id} declares no situation '{when}': add a [[lowered]] entry to rules/{self.id}.toml")

    @property
    def help_uri(self) -> str:
        """Where the ruling behind the rule can be read: the first cited challenge issue/PR
        (GitHub redirects ``issues/N`` to a PR), or the challenge README when that is cited
        first or nothing else is."""
        for source in self.sources:
            number = re.fullmatch(r"#(\d+)", source.strip())
            if number:
                return f"{CHALLENGE_REPOSITORY}/issues/{number.group(1)}"
            if source.strip().upper().startswith("README"):
                break
        return f"{CHALLENGE_REPOSITORY}#readme"

    def examples_of(self, kind: str) -> list[Example]:
        return [example for example in self.examples if example.kind == kind]


@dataclass(frozen=True)
class Catalog:
    rules: tuple[Rule, ...]
    content_hash: str  # SHA-256 over every rule file's name and bytes, for cache keys

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        return {candidate.id: candidate for candidate in self.rules}


def parse_rule(file_name: str, text: str) -> Rule:
    """Validate one rule file's text and build its ``Rule``; ``file_name`` is only for messages
    and for checking that the file is named after the rule's ID."""
    where = f"rule file {file_name}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _ALLOWED_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in _TEXT_KEYS:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CatalogError(f"{where}: '{key}' must be a non-empty string")
    for key in _LIST_KEYS:
        value = data.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item.strip() for item in value)
        ):
            raise CatalogError(f"{where}: '{key}' must be a non-empty list of strings")
    rule_id = data["id"]
    if not RULE_ID_PATTERN.fullmatch(rule_id):
        raise CatalogError(f"{where}: id '{rule_id}' does not match PG followed by three digits")
    if file_name.endswith(".toml") and file_name[: -len(".toml")] != rule_id:
        raise CatalogError(f"{where}: file must be named {rule_id}.toml")
    if not RULE_NAME_PATTERN.fullmatch(data["name"]):
        raise CatalogError(f"{where}: name '{data['name']}' is not kebab-case")
    try:
        severity = Severity(data["severity"])
    except ValueError:
        raise CatalogError(f"{where}: severity '{data['severity']}' is not one of error, warning, info") from None
    bad_checks = [check for check in data["checks"] if check not in CHECK_KINDS]
    if bad_checks:
        raise CatalogError(f"{where}: checks {bad_checks} must be 'static' and/or 'runtime'")
    examples = _parse_examples(where, data.get("examples"))
    lowered = _parse_lowered(where, severity, data.get("lowered", []))
    return Rule(
        id=rule_id,
        name=data["name"],
        title=data["title"].strip(),
        severity=severity,
        flags=data["flags"].strip(),
        why=data["why"].strip(),
        sources=tuple(source.strip() for source in data["sources"]),
        checks=tuple(data["checks"]),
        fix=data["fix"].strip(),
        examples=examples,
        lowered=lowered,
    )


def _parse_lowered(where: str, severity: Severity, raw: object) -> tuple[Lowered, ...]:
    """``[[lowered]]`` entries: each names a situation (kebab-case, unique) and a severity
    strictly below the rule's, so the rule's own severity stays the most a finding can carry."""
    if not isinstance(raw, list):
        raise CatalogError(f"{where}: 'lowered' must be a list of tables ([[lowered]])")
    items: list[Lowered] = []
    for index, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict) or sorted(entry) != sorted(_LOWERED_KEYS):
            raise CatalogError(f"{where}: lowered {index} must have exactly the keys {', '.join(_LOWERED_KEYS)}")
        if not all(isinstance(entry[key], str) and entry[key].strip() for key in _LOWERED_KEYS):
            raise CatalogError(f"{where}: lowered {index} keys must be non-empty strings")
        if not RULE_NAME_PATTERN.fullmatch(entry["when"]):
            raise CatalogError(f"{where}: lowered {index} when '{entry['when']}' is not kebab-case")
        if entry["when"] in {item.when for item in items}:
            raise CatalogError(f"{where}: lowered situation '{entry['when']}' is declared twice")
        try:
            level = Severity(entry["severity"])
        except ValueError:
            raise CatalogError(f"{where}: lowered {index} severity '{entry['severity']}' is not a severity") from None
        if level.rank >= severity.rank:
            raise CatalogError(f"{where}: lowered {index} severity '{level.value}' is not below '{severity.value}'")
        items.append(Lowered(when=entry["when"], severity=level, why=" ".join(entry["why"].split())))
    return tuple(items)


def _parse_examples(where: str, raw: object) -> tuple[Example, ...]:
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where}: needs [[examples]] (an illegal one and a legal one)")
    examples = []
    for index, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: example {index} must be a table")
        unknown = sorted(set(entry) - set(_EXAMPLE_KEYS))
        if unknown:
            raise CatalogError(f"{where}: example {index} has unknown key(s) {', '.join(unknown)}")
        for key in _EXAMPLE_KEYS:
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise CatalogError(f"{where}: example {index} '{key}' must be a non-empty string")
        if entry["kind"] not in EXAMPLE_KINDS:
            raise CatalogError(f"{where}: example {index} kind '{entry['kind']}' must be 'illegal' or 'legal'")
        examples.append(
            Example(
                kind=entry["kind"],
                title=entry["title"].strip(),
                file=entry["file"].strip(),
                code=entry["code"].lstrip("\n"),
            )
        )
    kinds = {example.kind for example in examples}
    for kind in EXAMPLE_KINDS:
        if kind not in kinds:
            raise CatalogError(f"{where}: needs at least one '{kind}' example")
    return tuple(examples)


def build_catalog(files: dict[str, str]) -> Catalog:
    """Validate a whole set of rule files (name → text): each file, then unique IDs and names."""
    digest = hashlib.sha256()
    rules: list[Rule] = []
    seen_ids: dict[str, str] = {}
    seen_names: dict[str, str] = {}
    for file_name in sorted(files):
        text = files[file_name]
        digest.update(file_name.encode() + b"\0" + text.encode() + b"\0")
        parsed = parse_rule(file_name, text)
        if parsed.id in seen_ids:
            raise CatalogError(f"rule file {file_name}: id {parsed.id} already used by {seen_ids[parsed.id]}")
        if parsed.name in seen_names:
            raise CatalogError(f"rule file {file_name}: name '{parsed.name}' already used by {seen_names[parsed.name]}")
        seen_ids[parsed.id] = file_name
        seen_names[parsed.name] = file_name
        rules.append(parsed)
    rules.sort(key=lambda item: item.id)
    return Catalog(rules=tuple(rules), content_hash=digest.hexdigest())


def read_rule_files() -> dict[str, str]:
    """Every ``*.toml`` of the installed ``rules`` package, by file name."""
    try:
        folder = resources.files("rules")
        entries = [entry for entry in folder.iterdir() if entry.name.endswith(".toml")]
        return {entry.name: entry.read_text(encoding="utf-8") for entry in entries}
    except (ModuleNotFoundError, OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read the rule catalog: {exc}") from None


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    return build_catalog(read_rule_files())


def all_rules() -> list[Rule]:
    return list(load_catalog().rules)


def rule(rule_id: str) -> Rule:
    """The rule with this ID; an unknown ID is a usage error (someone typed it)."""
    found = load_catalog().get(rule_id.strip().upper())
    if found is None:
        raise CatalogError(f"unknown rule '{rule_id}' (see golf-check --list-rules)")
    return found


def finding(
    rule_id: str, file: str, line: int, message: str, path: Iterable[Step] = (), when: str | None = None
) -> Finding:
    """The one way a detector reports: the rule's page decides the severity (its own, or the
    one declared for the situation ``when``), so no emit site can state a severity the
    catalog does not — and an unknown rule ID fails here, not in a report."""
    found = rule(rule_id)
    return Finding(
        rule=found.id, severity=found.severity_when(when), file=file, line=line, message=message, path=tuple(path)
    )
