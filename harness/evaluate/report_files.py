"""``report.json`` (schema ``golf-eval/1``) and ``report.md`` for one evaluation.

Why both: the JSON is what CI and the package audit read; the Markdown is what a reviewer
pastes into a pull request. Both are written atomically so a reader never sees half a report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomically


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "audited ✅" if report["audited"] else "NOT audited ❌"
    bpb = report["val_bpb"]
    lines = [
        f"## golf-eval: {verdict}",
        "",
        f"- **val_bpb**: {bpb:.8f}" if bpb is not None else "- **val_bpb**: n/a",
        f"- val_loss: {report['val_loss']:.8f}" if report["val_loss"] is not None else "- val_loss: n/a",
        f"- scored targets: {report['tokens']:,} · bytes: {report['bytes']:,}",
        f"- submission: `{report['submission'] or 'reference model'}` · artifact: "
        f"`{(report.get('artifact') or {}).get('name', '?')}`",
        f"- TTT: `{report['config']['ttt']}` · seq_len {report['config']['seq_len']} · stride "
        f"{report['config']['stride']} · chunk {report['config']['chunk_tokens']} tokens",
        _isolation_line(report.get("isolation") or {}),
        f"- log: `{report['log']['path']}` (head `{(report['log']['head_sha256'] or '')[:16]}`, "
        f"{'verified' if report['log']['verified'] else 'FAILED verification'})",
    ]
    if report.get("stopped"):
        lines.append(f"- stopped: {report['stopped']}")
    lines += ["", "### Findings", ""]
    if report["findings"]:
        lines += ["| rule | severity | where | message |", "|---|---|---|---|"]
        for finding in report["findings"]:
            message = finding["message"].replace("|", "\\|")
            lines.append(
                f"| {finding['rule']} | {finding['severity']} | `{finding['file']}:{finding['line']}` | {message} |"
            )
    else:
        lines.append("None.")
    for error in report["log"]["errors"]:
        lines.append(f"- log verification: {error}")
    probes = report.get("probes") or {}
    lines += [
        "",
        "### Runtime probes",
        "",
        "not run: the evaluation stopped before the probes"
        if not probes.get("available")
        else "```json\n" + json.dumps(probes, indent=2, sort_keys=True) + "\n```",
    ]
    attempts = (report.get("guards") or {}).get("attempts")
    lines += ["", "### Runtime guards", ""]
    if attempts is None:
        lines.append("no record of the guards in this report")
    elif not attempts:
        lines.append("No refused attempts.")
    else:
        lines += ["| rule | event | target | where | count |", "|---|---|---|---|---|"]
        for attempt in attempts:
            target = str(attempt["target"]).replace("|", "\\|")
            lines.append(
                f"| {attempt['rule']} | {attempt['event']} | `{target}` | "
                f"`{attempt['file']}:{attempt['line']}` | {attempt['count']} |"
            )
    timing = report.get("timing", {})
    lines += ["", "### Timing", ""] + [f"- {name}: {value:.3f}" for name, value in sorted(timing.items())]
    return "\n".join(lines) + "\n"


def _isolation_line(isolation: dict[str, Any]) -> str:
    """Which process held the submission's model and adapter: the reader weighs the verdict by it."""
    mode = isolation.get("mode", "in-process")
    label = "child process (`--isolate`)" if mode == "child-process" else "in-process"
    return f"- isolation: {label}" + (f" — {isolation['note']}" if isolation.get("note") else "")


def write_reports(out_dir: Path, report: dict[str, Any]) -> None:
    write_text_atomically(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomically(out_dir / "report.md", render_markdown(report))
