"""Run every rule family over one loaded submission.

Why a registry of plain modules: each rule family (data-flow TTT rules, scoring-mechanism
rules, package rules…) is one file with one ``check(ctx)`` function, so adding a family is
one import here and nothing else. A family that crashes on hostile input must not take the
whole audit down: its crash becomes a PG000 finding and the verdict becomes ``error``.
"""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

from harness.check.context import CheckContext, CheckOptions
from harness.check.forked import start_forked
from harness.check.parse import ParseFailure, parse_source
from harness.findings import Finding, Severity, unique_findings
from harness.python_ast import forget_trees
from harness.submission import Submission

# Module names under harness.check, in the order they run. A module that does not exist yet
# is skipped, so families can land independently.
FAMILY_MODULES: tuple[str, ...] = (
    "harness.check.rules_ttt",  # PG101–PG106: validation data into update/score/artifact sinks
    "harness.check.rules_scoring",  # PG201–PG204: causality, normalization, BOS, byte accounting
    "harness.check.rules_runtime_io",  # PG301–PG302: network, training shards during eval
    "harness.check.package",  # PG303, PG304, PG401–PG407: the submission package
)


# Families that compare claims with the other families' findings: they run after them,
# never beside them.
READS_EARLIER_FINDINGS: frozenset[str] = frozenset({"harness.check.package"})
# Families about the submission folder (README, logs, submission.json): a single .py file has
# none, so they are not even imported for one.
FOLDER_FAMILIES: frozenset[str] = frozenset({"harness.check.package"})
# Run in a forked child on a single audit, beside the others: chosen so both halves take
# about as long (the data-flow family alone is about as costly as the mechanism rules).
FORKED_FAMILIES: frozenset[str] = frozenset({"harness.check.rules_scoring", "harness.check.rules_runtime_io"})


def _family(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def analyze(submission: Submission, options: CheckOptions | None = None, *, parallel: bool = False) -> list[Finding]:
    """All findings for one submission: load problems, parse failures, then every family.

    ``parallel`` runs the independent families after the first in a forked child while this
    process runs the first (a single audit then uses both cores); the findings are the same
    and in the same order either way."""
    collecting = gc.isenabled()
    # The trees are acyclic and live until the end of the analysis: cyclic GC passes over
    # their ~100k nodes per file cost about a tenth of the run and free nothing.
    gc.disable()
    try:
        return _analyze(submission, options, parallel)
    finally:
        _forget_memos()
        if collecting:
            gc.enable()


def _forget_memos() -> None:
    """The children memos keep this submission's trees alive; a tree run audits many."""
    from harness.check.flow.names import forget_children as forget_flow_children
    from harness.check.mechanisms.syntax import forget_children as forget_syntax_children

    forget_flow_children()
    forget_syntax_children()
    forget_trees()


def _analyze(submission: Submission, options: CheckOptions | None, parallel: bool) -> list[Finding]:
    findings: list[Finding] = list(submission.load_findings)
    ctx = CheckContext(submission=submission, options=options or CheckOptions())
    for source in submission.sources:
        try:
            ctx.parsed.append(parse_source(source))
        except ParseFailure as failure:
            findings.append(
                Finding(
                    rule="PG000",
                    severity=Severity.ERROR if source.is_entry else Severity.WARNING,
                    file=source.display_name,
                    line=0,
                    message=str(failure),
                )
            )
    independent = [name for name in FAMILY_MODULES if name not in READS_EARLIER_FINDINGS]
    dependent = [
        name
        for name in FAMILY_MODULES
        if name in READS_EARLIER_FINDINGS and not (submission.single_file and name in FOLDER_FAMILIES)
    ]
    in_child = [name for name in independent if name in FORKED_FAMILIES] if parallel and ctx.parsed else []
    # The child imports its own families: their import time is then off this process's path.
    child = start_forked(lambda: _findings_by_family(in_child, ctx, findings)) if in_child else None
    found = _findings_by_family([name for name in independent if name not in in_child], ctx, findings)
    from_child = child.result() if child is not None else None
    found.update(from_child if from_child is not None else _findings_by_family(in_child, ctx, findings))
    for name in independent:  # family order, wherever each one ran
        findings.extend(found[name])
    findings.extend(_run_families(dependent, ctx, findings))
    return unique_findings(findings)


def _findings_by_family(names: list[str], ctx: CheckContext, earlier: list[Finding]) -> dict[str, list[Finding]]:
    """Independent families, each seeing only ``earlier``: the same whether they run here or
    in the forked child."""
    return {name: _run_families([name], ctx, earlier) for name in names}


def _run_families(names: list[str], ctx: CheckContext, earlier: list[Finding]) -> list[Finding]:
    """The findings of the families ``names`` in order; each later family sees the earlier ones."""
    found: list[Finding] = []
    for name in names:
        family = _family(name)
        if family is None:
            continue
        ctx.findings_so_far = earlier + found
        try:
            found.extend(family.check(ctx))
        except RecursionError:
            found.append(_family_crash(family, "nesting too deep to analyze"))
        except Exception as exc:  # noqa: BLE001 — a family bug must not hide other findings
            found.append(_family_crash(family, f"{type(exc).__name__}: {exc}"))
    return found


def _family_crash(family: ModuleType, reason: str) -> Finding:
    short = family.__name__.rsplit(".", 1)[-1]
    return Finding(
        rule="PG000",
        severity=Severity.ERROR,
        file="",
        line=0,
        message=f"analysis '{short}' could not complete: {reason.splitlines()[0][:200]}",
    )
