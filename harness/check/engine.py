"""Run every rule family over one loaded submission.

Why a table of plain imports: a family is one module with one ``check(ctx)``, so adding one is
an import and a row here, and a missing one is an ImportError at start-up, never a silent pass.
A family that crashes on hostile input becomes a PG000 finding, never the whole audit's crash.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

from harness.catalog import finding
from harness.check import package, rules_runtime_io, rules_scoring, rules_ttt
from harness.check.context import CheckContext, CheckOptions
from harness.check.forked import start_forked
from harness.check.parse import ParseFailure, parse_source
from harness.check.tree.children import forget_memos
from harness.findings import Finding, unique_findings
from harness.python_ast import forget_trees
from harness.submission import Submission


@dataclass(frozen=True)
class Family:  # one rule family and where it may run
    name: str
    check: Callable[[CheckContext], list[Finding]]
    # on a single audit, run in a forked child beside the others: chosen so both halves take
    # about as long (the data-flow family alone is about as costly as the mechanism rules)
    forked: bool = False
    # about the submission folder (README, logs, submission.json): a single .py file has none
    folder_only: bool = False
    # compares claims with the other families' findings: runs after them, never beside them
    reads_findings: bool = False


# In the order they run (and their findings are reported).
FAMILIES: tuple[Family, ...] = (
    Family("rules_ttt", rules_ttt.check),  # PG101–PG106: validation data into update/score/artifact sinks
    Family("rules_scoring", rules_scoring.check, forked=True),  # PG201–PG204: causality, normalization, BOS, bytes
    Family("rules_runtime_io", rules_runtime_io.check, forked=True),  # PG301–PG302: network, shards during eval
    Family("package", package.check, folder_only=True, reads_findings=True),  # PG303, PG304, PG401–PG407
)


def analyze(submission: Submission, options: CheckOptions | None = None, *, parallel: bool = False) -> list[Finding]:
    """All findings for one submission: load problems, parse failures, then every family.
    ``parallel`` runs the forked families in a child while this process runs the others: the
    same findings in the same order, on both cores."""
    collecting = gc.isenabled()
    # The trees are acyclic and live until the end of the analysis: cyclic GC passes over
    # their ~100k nodes per file cost about a tenth of the run and free nothing.
    gc.disable()
    try:
        return _analyze(submission, options or CheckOptions(), parallel)
    finally:
        # the per-node memos keep this submission's trees alive; a tree run audits many
        forget_memos()
        forget_trees()
        if collecting:
            gc.enable()


def _analyze(submission: Submission, options: CheckOptions, parallel: bool) -> list[Finding]:
    findings: list[Finding] = list(submission.load_findings)
    ctx = CheckContext(submission=submission, options=options)
    for source in submission.sources:
        try:
            ctx.parsed.append(parse_source(source))
        except ParseFailure as failure:
            helper = None if source.is_entry else "helper-file"
            findings.append(finding("PG000", source.display_name, 0, str(failure), when=helper))
    wanted = [f for f in FAMILIES if not (submission.single_file and f.folder_only)]
    independent = [f for f in wanted if not f.reads_findings]
    in_child = [f for f in independent if f.forked] if parallel and ctx.parsed else []
    child = start_forked(lambda: _findings_by_family(in_child, ctx, findings)) if in_child else None
    found = _findings_by_family([f for f in independent if f not in in_child], ctx, findings)
    from_child = child.result() if child is not None else None
    found.update(from_child if from_child is not None else _findings_by_family(in_child, ctx, findings))
    for family in independent:  # family order, wherever each one ran
        findings.extend(found[family.name])
    for family in wanted:
        if family.reads_findings:
            findings.extend(_run(family, ctx, findings))
    return unique_findings(findings)


def _findings_by_family(families: list[Family], ctx: CheckContext, earlier: list[Finding]) -> dict[str, list[Finding]]:
    """Each family seeing only ``earlier``, here or in the forked child (hence keyed by name:
    the child's result must pickle)."""
    return {family.name: _run(family, ctx, earlier) for family in families}


def _run(family: Family, ctx: CheckContext, earlier: list[Finding]) -> list[Finding]:
    ctx.findings_so_far = list(earlier)
    try:
        return family.check(ctx)
    except RecursionError:
        reason = "nesting too deep to analyze"
    except Exception as exc:  # noqa: BLE001 — a family bug must not hide other findings
        reason = f"{type(exc).__name__}: {exc}"
    message = f"analysis '{family.name}' could not complete: {reason.splitlines()[0][:200]}"
    return [finding("PG000", "", 0, message)]
