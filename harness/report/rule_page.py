"""Rule documentation pages: ``golf-check --explain PGxxx``, ``--list-rules`` and SARIF help.

Why plain text built here rather than rich markup: the page is also embedded in SARIF (text
and Markdown flavours) and must print fast from a command that otherwise imports nothing heavy.
"""

from __future__ import annotations

import textwrap

from harness.catalog import Example, Rule


def rule_page_text(rule: Rule) -> str:
    lines = [
        f"{rule.id} {rule.name}",
        rule.title,
        "",
        f"Severity: {rule.severity.value}    Checks: {', '.join(rule.checks)}    Sources: {', '.join(rule.sources)}",
        "",
        "What it flags",
        _indent(rule.flags),
        "",
        "Why",
        _indent(rule.why),
        "",
    ]
    if rule.lowered:
        lines.append("Reported lower")
        for item in rule.lowered:
            text = f"{item.severity.value} when {item.when}: {item.why}"
            lines.append(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    "))
        lines.append("")
    for example in rule.examples_of("illegal"):
        lines.extend(_example_text("Illegal", example))
    lines.extend(["How to fix", _indent(rule.fix), ""])
    for example in rule.examples_of("legal"):
        lines.extend(_example_text("Legal", example))
    lines.append(f"More: {rule.help_uri}")
    return "\n".join(lines) + "\n"


def _example_text(label: str, example: Example) -> list[str]:
    return [
        f"{label} example: {example.title} ({example.file})",
        textwrap.indent(example.code.rstrip("\n"), "    │ ", predicate=lambda _line: True),
        "",
    ]


def _indent(text: str) -> str:
    return textwrap.indent(text.strip(), "  ")


def rule_page_markdown(rule: Rule) -> str:
    parts = [
        f"**{rule.id} {rule.name}**: {rule.title}",
        f"Severity: `{rule.severity.value}` · checks: {', '.join(rule.checks)} · sources: {', '.join(rule.sources)}",
        f"**What it flags.** {rule.flags}",
        f"**Why.** {rule.why}",
    ]
    if rule.lowered:
        parts.append(
            "**Reported lower.** "
            + " ".join(f"`{item.severity.value}` when *{item.when}*: {item.why}" for item in rule.lowered)
        )
    for example in rule.examples_of("illegal"):
        parts.append(_example_markdown("Illegal", example))
    parts.append(f"**How to fix.** {rule.fix}")
    for example in rule.examples_of("legal"):
        parts.append(_example_markdown("Legal", example))
    return "\n\n".join(parts) + "\n"


def _example_markdown(label: str, example: Example) -> str:
    fence = "````" if "```" in example.code else "```"
    language = "python" if example.file.endswith(".py") else ""
    return (
        f"*{label} example: {example.title}* (`{example.file}`)\n\n{fence}{language}\n{example.code.rstrip()}\n{fence}"
    )


def rules_table_text(rules: list[Rule]) -> str:
    """One line per rule, columns aligned: ID, severity, name, title."""
    if not rules:
        return "no rules in the catalog\n"
    name_width = max(len(rule.name) for rule in rules)
    lines = [f"{'ID':<6} {'SEVERITY':<8} {'NAME':<{name_width}} TITLE"]
    for rule in rules:
        lines.append(f"{rule.id:<6} {rule.severity.value:<8} {rule.name:<{name_width}} {rule.title}")
    return "\n".join(lines) + "\n"
