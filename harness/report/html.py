"""report.html: the one page a reviewer looks at — shared machinery of both pages.

Why one self-contained file: a reviewer opens it from disk, attaches it to a pull request or
archives it with the run, so it carries its own CSS, highlighted code and SVG plots and asks
nothing of the network. jinja2 renders it with autoescaping on (finding messages and
submission code are attacker-controlled text), pygments highlights code and matplotlib draws
the plots; the three are the ``report`` extra and are imported only here, so golf-check's core
path never loads them. When they are missing the command fails with one line naming the
``pip install`` and its own exit code (``EXIT_MISSING_EXTRA``).

This module builds the parts both pages show (verdict, findings with their source→sink path and
the code around each step, the catalog's rule pages); ``html_check`` and ``html_eval`` build the
golf-check and golf-eval pages from them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from harness.catalog import Rule, load_catalog
from harness.errors import MissingExtraError
from harness.report.html_code import Highlighter

EXTRA_HINT = "pip install 'golf-harness[report]'"
_EXTRA_MODULES = ("jinja2", "markupsafe", "matplotlib", "pygments")


@dataclass(frozen=True)
class Libraries:
    """The report extra, imported once per page: templates, plotting and highlighting."""

    environment: Any
    markup: Callable[[str], Any]
    pyplot: ModuleType
    highlighter: Highlighter


def require_extra() -> None:
    """Fail fast, before any expensive work, when the report extra is not installed; finds the
    modules without importing them (the check itself costs nothing)."""
    missing = [name for name in _EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(_missing_message(missing[0]))


def _missing_message(module: str) -> str:
    return f"report.html needs the report extra ({module} is not installed): {EXTRA_HINT}"


def load_libraries() -> Libraries:
    """Import the report extra or fail with one line that says how to install it."""
    try:
        import jinja2
        import markupsafe
        import matplotlib

        matplotlib.use("Agg", force=True)  # no display: draw to SVG text only
        import matplotlib.pyplot as pyplot

        highlighter = Highlighter.create()
    except ImportError as exc:
        raise MissingExtraError(_missing_message(exc.name or "a library")) from None
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["thousands"] = lambda value: f"{int(value):,}"
    return Libraries(environment, markupsafe.Markup, pyplot, highlighter)


@dataclass(frozen=True)
class VerdictView:
    """The headline: a CSS class, the word, and the reasons behind it (one sentence each)."""

    css: str
    label: str
    reasons: list[str]


@dataclass(frozen=True)
class StepView:
    number: int
    where: str
    note: str
    excerpt: Any  # highlighted HTML (Markup) or None when the file's text is not at hand


@dataclass(frozen=True)
class FindingView:
    rule: str
    severity: str
    where: str
    message: str
    title: str
    anchor: str
    excerpt: Any
    steps: list[StepView]
    note: str = ""


@dataclass(frozen=True)
class ExampleView:
    label: str
    title: str
    file: str
    code: Any


@dataclass(frozen=True)
class RuleView:
    id: str
    name: str
    title: str
    severity: str
    flags: str
    why: str
    fix: str
    sources: str
    help_uri: str
    anchor: str
    examples: list[ExampleView] = field(default_factory=list)


def location(file: str, line: int) -> str:
    if not file:
        return "(submission)"
    return f"{file}:{line}" if line > 0 else file


def finding_views(
    libraries: Libraries, findings: Iterable[dict[str, Any]], source_text: Callable[[str], str | None]
) -> list[FindingView]:
    """Findings as JSON records (``Finding.to_json``) with their rule titles and code excerpts;
    ``source_text`` gives the analyzed text of a file named in a finding, or None."""
    catalog = load_catalog()
    views = []
    for record in findings:
        rule = catalog.get(str(record.get("rule", "")))
        file, line = str(record.get("file", "")), int(record.get("line", 0) or 0)
        steps = [
            StepView(
                number,
                location(str(step.get("file", "")), int(step.get("line", 0) or 0)),
                str(step.get("note", "")),
                _excerpt(libraries, source_text, str(step.get("file", "")), int(step.get("line", 0) or 0)),
            )
            for number, step in enumerate(record.get("path") or [], start=1)
        ]
        views.append(
            FindingView(
                rule=str(record.get("rule", "")),
                severity=str(record.get("severity", "")),
                where=location(file, line),
                message=str(record.get("message", "")),
                title=rule.title if rule is not None else "",
                anchor=f"rule-{rule.id}" if rule is not None else "",
                excerpt=_excerpt(libraries, source_text, file, line),
                steps=steps,
                note=str(record.get("note", "")),
            )
        )
    return views


def _excerpt(libraries: Libraries, source_text: Callable[[str], str | None], file: str, line: int) -> Any:
    if not file or line < 1:
        return None
    html = libraries.highlighter.excerpt(source_text(file), file, line)
    return libraries.markup(html) if html is not None else None


def rule_views(libraries: Libraries, rule_ids: Iterable[str]) -> list[RuleView]:
    """The catalog pages of the rules the findings cite, in ID order, examples highlighted."""
    catalog = load_catalog()
    rules = [rule for rule in (catalog.get(rule_id) for rule_id in sorted(set(rule_ids))) if rule is not None]
    return [_rule_view(libraries, rule) for rule in rules]


def _rule_view(libraries: Libraries, rule: Rule) -> RuleView:
    examples = [
        ExampleView(
            label,
            example.title,
            example.file,
            libraries.markup(libraries.highlighter.block(example.code, example.file)),
        )
        for label, kind in (("Illegal", "illegal"), ("Legal", "legal"))
        for example in rule.examples_of(kind)
    ]
    return RuleView(
        id=rule.id,
        name=rule.name,
        title=rule.title,
        severity=rule.severity.value,
        flags=rule.flags,
        why=rule.why,
        fix=rule.fix,
        sources=", ".join(rule.sources),
        help_uri=rule.help_uri,
        anchor=f"rule-{rule.id}",
        examples=examples,
    )


def render_page(libraries: Libraries, template: str, **context: Any) -> str:
    return str(libraries.environment.get_template(template).render(code_css=libraries.highlighter.css(), **context))
