"""report.html for golf-eval: written next to report.json, or rendered from chunk logs alone
(``golf-eval report LOG [--against LOG2]``).

Why two entry points over one page: the evaluator has everything (static findings, probes,
guards, the verified log), while a reviewer holding only a published log has the log — and
must still get the same verdict logic, the same BPB figure (recomputed from the log's exact
sums) and the same plots, with a second run laid over the first (TTT against no TTT).
What the log alone cannot tell (static audit, probes, guards) is said to be absent, never
guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomically
from harness.check.pkg.limits import SIZE_LIMIT_BYTES
from harness.errors import MissingExtraError
from harness.report.html import (
    Libraries,
    VerdictView,
    finding_views,
    load_libraries,
    location,
    render_page,
    rule_views,
)
from harness.report.html_plots import chunk_bpb_svg, running_bpb_svg
from harness.report.html_runs import Run, distinct_labels, read_run

PAGE_NAME = "report.html"
_MAX_SOURCE_BYTES = 4_000_000  # excerpts come from the submission's own files, read capped


def render_eval(report: dict[str, Any] | None, runs: list[Run]) -> str:
    """The page of one evaluation (``report``: golf-eval's report.json; None when only the logs
    are known); ``runs[0]`` is that evaluation's log, further runs are overlaid on its plots."""
    libraries = load_libraries()
    distinct_labels(runs)
    primary = runs[0]
    findings = _findings(report, runs)
    submission = (report or {}).get("submission")
    views = finding_views(libraries, findings, _source_reader(Path(submission) if submission else None))
    return render_page(
        libraries,
        "eval.html.j2",
        title=f"golf-eval report: {submission or primary.label}",
        from_logs_only=report is None,
        verdict=_verdict(report, primary, findings),
        score=_score(report, primary),
        artifact=_artifact(report, primary),
        runs=[_run_view(run) for run in runs],
        config=sorted(((report or {}).get("config") or primary.header.get("config") or {}).items()),
        probes=(report or {}).get("probes"),
        guards=(report or {}).get("guards"),
        stopped=(report or {}).get("stopped") or (primary.summary or {}).get("stopped"),
        isolation=(report or {}).get("isolation"),
        findings=views,
        rules=rule_views(libraries, (str(finding.get("rule", "")) for finding in findings)),
        plots=_plots(libraries, runs),
        tool_version=str(((report or {}).get("tool") or {}).get("version") or primary.header.get("version", "?")),
    )


def render_logs(log: Path, against: list[Path]) -> str:
    """The page from chunk logs alone: ``log`` first, each of ``against`` overlaid."""
    return render_eval(None, [read_run(path) for path in (log, *against)])


def write_eval_page(out_dir: Path, report: dict[str, Any]) -> str | None:
    """Write report.html for golf-eval's ``report`` next to report.json (atomically); returns
    None, or — when the report extra is not installed — the one line saying so (the evaluation
    itself stands; a stale page from an earlier run is removed rather than left to mislead)."""
    target = out_dir / PAGE_NAME
    log = Path(str((report.get("log") or {}).get("path") or out_dir / "chunks.jsonl"))
    try:
        runs = [read_run(log)] if log.is_file() else [Run(path=log, label=str(log), verified=_missing(log))]
        text = render_eval(report, runs)
    except MissingExtraError as missing:
        target.unlink(missing_ok=True)
        return f"report.html not written: {missing}"
    write_text_atomically(target, text)
    return None


def _missing(log: Path) -> Any:
    from harness.evaluate.verify import VerifyResult

    return VerifyResult(ok=False, errors=[f"{log}: audit log not found"])


def _findings(report: dict[str, Any] | None, runs: list[Run]) -> list[dict[str, Any]]:
    if report is not None:
        return list(report.get("findings") or [])
    findings = []
    for run in runs:
        for finding in run.verified.runtime_findings:
            findings.append({**finding, "note": run.label} if len(runs) > 1 else finding)
    return findings


def _source_reader(folder: Path | None) -> Any:
    """The text of a file a finding names, read from the submission folder (never run)."""
    root = folder.resolve() if folder is not None and folder.is_dir() else None

    def read(name: str) -> str | None:
        if root is None or not name or name.startswith("<") or "[decoded#" in name:
            return None
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file() or path.stat().st_size > _MAX_SOURCE_BYTES:
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    return read


def _verdict(report: dict[str, Any] | None, run: Run, findings: list[dict[str, Any]]) -> VerdictView:
    """Audited only when the evaluator says so; from logs alone, verified-and-complete."""
    errors = [
        f"{f.get('rule')} error at {location(str(f.get('file', '')), int(f.get('line', 0) or 0))}: {f.get('message')}"
        for f in findings
        if f.get("severity") == "error"
    ]
    reasons = [*errors, *(f"log verification: {error}" for error in run.verified.errors)]
    if run.verified.ok and not run.verified.complete:
        reasons.append("the log does not cover the whole validation set (stopped early or partial)")
    stopped = (report or {}).get("stopped") or (run.summary or {}).get("stopped")
    if stopped:
        reasons.append(f"stopped: {stopped}")
    if report is not None:
        if report.get("audited"):
            return VerdictView("pass", "AUDITED", ["log verified and complete; no error finding"])
        return VerdictView("fail", "NOT AUDITED", reasons or ["the evaluation did not finish"])
    if not reasons:
        return VerdictView("pass", "LOG VERIFIED", ["chain, order, coverage, fingerprints and BPB re-checked"])
    return VerdictView("fail", "LOG NOT VERIFIED" if not run.verified.ok else "NOT AUDITED", reasons)


def _score(report: dict[str, Any] | None, run: Run) -> dict[str, Any]:
    """The headline numbers: the report's (itself taken from the verified log) or the log's."""
    source = report if report is not None else {}
    bpb = source.get("val_bpb", run.verified.val_bpb) if report is not None else run.verified.val_bpb
    loss = source.get("val_loss") if report is not None else run.verified.val_loss
    finite = bpb is not None and bpb == bpb
    return {
        "bpb": f"{bpb:.8f}" if finite else "n/a",
        "bpb_exact": repr(bpb) if finite else "",
        "loss": f"{loss:.8f}" if loss is not None and loss == loss else "n/a",
        "tokens": int(source.get("tokens", run.verified.tokens) if report is not None else run.verified.tokens),
        "bytes": int(source.get("bytes", run.verified.bytes) if report is not None else run.verified.bytes),
    }


def _artifact(report: dict[str, Any] | None, run: Run) -> dict[str, Any] | None:
    artifact = (report or {}).get("artifact") or run.artifact
    size = artifact.get("bytes") if isinstance(artifact, dict) else None
    if not isinstance(size, int):
        return None
    return {
        "name": str(artifact.get("name", "?")),
        "sha256": str(artifact.get("sha256", "")),
        "bytes": size,
        "cap": SIZE_LIMIT_BYTES,
        "percent": min(100.0, 100.0 * size / SIZE_LIMIT_BYTES),
        "over": size > SIZE_LIMIT_BYTES,
    }


def _run_view(run: Run) -> dict[str, Any]:
    bpb = run.verified.val_bpb
    return {
        "label": run.label,
        "path": str(run.path),
        "ttt": run.ttt,
        "ok": run.verified.ok,
        "complete": run.verified.complete,
        "head": run.verified.head_sha256,
        "chunks": run.verified.chunks,
        "tokens": run.verified.tokens,
        "bytes": run.verified.bytes,
        "bpb": f"{bpb:.8f}" if bpb is not None and bpb == bpb else "n/a",
        "errors": run.verified.errors,
    }


def _plots(libraries: Libraries, runs: list[Run]) -> dict[str, Any] | None:
    if not any(run.points for run in runs):
        return None
    return {
        "running": libraries.markup(running_bpb_svg(libraries.pyplot, runs)),
        "chunk": libraries.markup(chunk_bpb_svg(libraries.pyplot, runs)),
    }
