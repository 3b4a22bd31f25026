"""The rule catalog: every shipped rule file validates, malformed files fail clearly, and every
rule's Python examples behave as declared when checked as a single file.

``test_examples`` is parametrized from the catalog itself, so a rule added later by any helper
is covered without touching this file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import rules
from harness.catalog import (
    CatalogError,
    Rule,
    all_rules,
    build_catalog,
    finding,
    load_catalog,
    parse_rule,
    rule,
)
from harness.check.context import CheckOptions
from harness.check.runner import audit_submissions
from harness.findings import Severity

RULES_DIR = Path(rules.__file__).parent

VALID = '''
id = "PG950"
name = "example-rule"
title = "An example"
severity = "warning"
flags = "What it flags."
why = "Why, citing #152."
sources = ["#152"]
checks = ["static"]
fix = "How to fix."

[[examples]]
kind = "illegal"
title = "bad"
file = "train_gpt.py"
code = """
x = 1
"""

[[examples]]
kind = "legal"
title = "good"
file = "train_gpt.py"
code = "y = 2\\n"
'''


def test_every_rule_file_present_is_loaded_and_valid() -> None:
    files = sorted(RULES_DIR.glob("*.toml"))
    assert files, "the rules package ships no rule files"
    for file in files:
        tomllib.loads(file.read_text(encoding="utf-8"))
    catalog = load_catalog()
    assert [r.id for r in catalog.rules] == sorted(file.stem for file in files)
    assert len({r.name for r in catalog.rules}) == len(catalog.rules)
    assert len(catalog.content_hash) == 64


def test_pg000_entry() -> None:
    entry = rule("pg000")
    assert (entry.id, entry.name, entry.severity) == ("PG000", "could-not-analyze", Severity.ERROR)
    assert [example.kind for example in entry.examples] == ["illegal", "legal"]
    assert entry.help_uri == "https://github.com/openai/parameter-golf#readme"
    assert all_rules()[0].id == "PG000"


def test_unknown_rule_is_a_usage_error() -> None:
    with pytest.raises(CatalogError) as caught:
        rule("PG999")
    assert str(caught.value) == "unknown rule 'PG999' (see golf-check --list-rules)"
    assert caught.value.exit_code == 2


def test_valid_text_parses_into_a_rule() -> None:
    parsed = parse_rule("PG950.toml", VALID)
    assert parsed.id == "PG950"
    assert parsed.severity is Severity.WARNING
    assert parsed.sources == ("#152",)
    assert parsed.examples[0].code == "x = 1\n"
    assert parsed.help_uri == "https://github.com/openai/parameter-golf/issues/152"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('severity = "warning"', 'severity = "fatal"'),
            "severity 'fatal' is not one of error, warning, info",
        ),
        (lambda t: t.replace('id = "PG950"', 'id = "PG95"'), "id 'PG95' does not match PG followed by three digits"),
        (
            lambda t: t.replace('name = "example-rule"', 'name = "Example_Rule"'),
            "name 'Example_Rule' is not kebab-case",
        ),
        (lambda t: t.replace('fix = "How to fix."\n', ""), "'fix' must be a non-empty string"),
        (lambda t: t.replace('sources = ["#152"]', "sources = []"), "'sources' must be a non-empty list of strings"),
        (
            lambda t: t.replace('checks = ["static"]', 'checks = ["dynamic"]'),
            "checks ['dynamic'] must be 'static' and/or 'runtime'",
        ),
        (lambda t: t.replace('kind = "legal"', 'kind = "illegal"'), "needs at least one 'legal' example"),
        (lambda t: t.replace('title = "An example"', 'title = "An example"\nauthor = "x"'), "unknown key(s) author"),
        (
            lambda t: t.replace('kind = "illegal"', 'kind = "wrong"'),
            "example 1 kind 'wrong' must be 'illegal' or 'legal'",
        ),
        (lambda t: t.replace("[[examples]]", "[[examples", 1), "not valid TOML"),
    ],
)
def test_malformed_rule_files_fail_with_a_clear_message(edit, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_rule("PG950.toml", edit(VALID))
    assert str(caught.value).startswith("rule file PG950.toml: ")
    assert message in str(caught.value)


LOWERED = VALID.replace(
    "[[examples]]",
    '[[lowered]]\nwhen = "helper-only"\nseverity = "info"\nwhy = "Only a helper does it."\n\n[[examples]]',
    1,
)


def test_a_page_declares_its_lower_severities() -> None:
    parsed = parse_rule("PG950.toml", LOWERED)
    assert parsed.severities == {Severity.WARNING, Severity.INFO}
    assert parsed.severity_when(None) is Severity.WARNING
    assert parsed.severity_when("helper-only") is Severity.INFO
    with pytest.raises(CatalogError, match="PG950 declares no situation 'other'"):
        parsed.severity_when("other")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('severity = "info"', 'severity = "error"'), "severity 'error' is not below 'warning'"),
        (lambda t: t.replace('severity = "info"', 'severity = "warning"'), "severity 'warning' is not below"),
        (lambda t: t.replace('when = "helper-only"', 'when = "Helper only"'), "is not kebab-case"),
        (lambda t: t.replace('why = "Only a helper does it."\n', ""), "must have exactly the keys when, severity, why"),
        (lambda t: t.replace("[[lowered]]", "lowered = 1\n[[lowered_]]"), "unknown key(s) lowered_"),
    ],
)
def test_malformed_lowered_entries_fail_with_a_clear_message(edit, message: str) -> None:
    with pytest.raises(CatalogError, match=r"rule file PG950.toml: ") as caught:
        parse_rule("PG950.toml", edit(LOWERED))
    assert message in str(caught.value)


def test_finding_takes_its_severity_from_the_page() -> None:
    assert finding("PG101", "train_gpt.py", 3, "m").severity is Severity.ERROR
    assert finding("PG101", "train_gpt.py", 3, "m", when="not-run").severity is Severity.INFO
    assert finding("PG000", "helper.py", 0, "m", when="helper-file").severity is Severity.WARNING
    assert finding("PG405", "", 0, "m", when="margin-met").severity is Severity.INFO
    with pytest.raises(CatalogError, match="PG101 declares no situation 'helper-file'"):
        finding("PG101", "train_gpt.py", 3, "m", when="helper-file")
    with pytest.raises(CatalogError, match="unknown rule 'PG999'"):
        finding("PG999", "train_gpt.py", 3, "m")


def test_no_emit_site_states_a_severity() -> None:
    """Severities come from the rule pages: a ``Severity.X`` at an emit site under
    harness/check (golf-check) or harness/evaluate (golf-eval's runtime findings) would let a
    finding carry one its page does not declare."""
    harness = Path(__file__).parent.parent / "harness"
    stated = [
        f"{path.relative_to(harness)}:{number}"
        for path in sorted([*(harness / "check").rglob("*.py"), *(harness / "evaluate").rglob("*.py")])
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(f"Severity.{level}" in line for level in ("ERROR", "WARNING", "INFO"))
        and " is Severity." not in line
        and "severity in (" not in line
    ]
    assert stated == []


def test_catalog_level_checks() -> None:
    with pytest.raises(CatalogError, match="file must be named PG950.toml"):
        build_catalog({"PG951.toml": VALID})
    renamed = VALID.replace('id = "PG950"', 'id = "PG951"')
    with pytest.raises(CatalogError, match="name 'example-rule' already used by PG950.toml"):
        build_catalog({"PG950.toml": VALID, "PG951.toml": renamed})
    two = build_catalog({"PG951.toml": renamed.replace("example-rule", "other-rule"), "PG950.toml": VALID})
    assert [r.id for r in two.rules] == ["PG950", "PG951"]


def _python_examples() -> list[tuple[Rule, int]]:
    cases = []
    for entry in load_catalog().rules:
        for index, example in enumerate(entry.examples):
            if example.file.endswith(".py"):
                cases.append((entry, index))
    return cases


@pytest.mark.parametrize(
    ("entry", "index"),
    _python_examples(),
    ids=[f"{entry.id}-{entry.examples[index].kind}-{index}" for entry, index in _python_examples()],
)
def test_examples(entry: Rule, index: int, tmp_path: Path) -> None:
    example = entry.examples[index]
    target = tmp_path / example.file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(example.code, encoding="utf-8")
    (result,) = audit_submissions([target], CheckOptions(), jobs=1, use_cache=False)
    found = [(f.rule, f.severity, f.line, f.message) for f in result.findings]
    assert all(f.severity in load_catalog().get(f.rule).severities for f in result.findings), found
    if example.kind == "illegal":
        assert any(f.rule == entry.id and f.severity is entry.severity for f in result.findings), (
            f"{entry.id} illegal example '{example.title}' did not raise {entry.id} at {entry.severity.value}: {found}"
        )
        other_errors = [f for f in result.findings if f.severity is Severity.ERROR and f.rule != entry.id]
        assert other_errors == [], f"other error-level findings: {found}"
    else:
        loud = [f for f in result.findings if f.severity in (Severity.ERROR, Severity.WARNING)]
        assert loud == [], f"{entry.id} legal example '{example.title}' raised: {found}"
