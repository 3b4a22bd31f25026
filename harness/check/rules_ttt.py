"""Rule family PG101–PG106: validation data reaching update, score, artifact and calibration
sinks in an illegal order. The six rules read one effect timeline (``harness/check/flow``) and
differ only in the ordering question. The entry's module code (``main()`` through it) is the
root whose order is judged; functions it never calls are judged alone, as ``info``. Findings
are judged under the documented configuration (README run command, ``*.sh``, logs): code it
switches off is ``info``, and a finding that a documented setting switches on names it.
"""

from __future__ import annotations

import libcst as cst

from harness.catalog import finding
from harness.check.context import CheckContext
from harness.check.flow.documented_data import documented_val_training
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.headline import logged_as_diagnostic
from harness.check.flow.ordering import decide, evidence
from harness.check.flow.taint import MAX_ANALYSES, Engine
from harness.check.switches.conditions import Switches
from harness.check.tree.index import ModuleIndex
from harness.findings import Finding, Step
from harness.submission import read_document_head

RULES = ("PG101", "PG102", "PG103", "PG104", "PG105", "PG106")
_DOC_LIMIT = 512 * 1024


def check(ctx: CheckContext) -> list[Finding]:
    if not ctx.parsed:
        return []
    index = FunctionTable(ctx.parsed)
    judge = _Judge(index, Switches(ctx.parsed, ctx.submission.settings, ctx.submission.alternative_settings))
    findings: list[Finding] = []
    for module in _entry_modules(index):
        findings.extend(judge.root(index.top[module]))
    documented = _documented_text(ctx)
    for module in index.modules:
        # a helper script with a ``__main__`` guard that the README, a ``*.sh`` file or the entry
        # names runs as a program of its own, judged like the entry (#168: ``build_prefix_blob.py``
        # compresses val tokens into the blob shipped beside the weights); one nobody mentions
        # stays an unreached helper
        source = module.parsed.source
        if not source.is_entry and source.display_name.rsplit("/", 1)[-1] in documented and _has_main_guard(module):
            findings.extend(judge.root(index.top[module], program=source.display_name))
    for info in index.all_functions:
        if info.node is not None and info.parent is None and info.uid not in judge.engine.reached:
            findings.extend(judge.root(info, unreached=True))
    if judge.engine.analyses >= MAX_ANALYSES:
        message = (
            f"data-flow analysis stopped after {MAX_ANALYSES} function analyses; "
            "calls beyond that were treated as library calls, so findings may be missing"
        )
        findings.append(finding("PG000", ctx.parsed[0].source.display_name, 0, message, when="analysis-limit"))
    findings.extend(documented_val_training(ctx.submission))
    return _strongest_per_place(findings)


class _Judge:
    """The roots' timelines judged under the documented configuration."""

    def __init__(self, index: FunctionTable, switches: Switches) -> None:
        self.engine = Engine(index)
        self.switches = switches
        self.decoded = {m.parsed.source.display_name for m in index.modules if m.parsed.source.decoded_depth > 0}
        self.trains_params = {info.uid for info in index.all_functions if info.trains_params}
        self.sources = {m.parsed.source.display_name: m.parsed for m in index.modules}

    def root(self, root: FuncInfo, program: str | None = None, unreached: bool = False) -> list[Finding]:
        """One root's findings; a root too deeply nested to walk is reported, not fatal, so the
        other roots are still judged and the submission cannot look clean by accident."""
        try:
            timeline = self.engine.timeline(root)
        except RecursionError:
            where = root.file if root.node is None else f"{root.file}:{root.line}"
            message = f"data-flow analysis of {root.display} ({where}) stopped: nesting too deep"
            return [finding("PG000", root.file, root.line, message, when="analysis-limit")]
        found = []
        for decision in decide(timeline, self.trains_params, self._diagnostic):
            message, when = decision.message, decision.when
            outcome = self.switches.outcome(decision.sink.conds)
            if unreached:
                when = "not-run"
                message += f" — in {root.display}, which the entry script never calls"
            elif not outcome.runs:
                when = "not-run"
                message += f" — not run in the documented configuration: {outcome.disabled_by}"
            elif outcome.enabled_by:
                enabled = ", ".join(f"{s.name}={s.value} in {s.file}:{s.line}" for s in outcome.enabled_by)
                message += " — enabled by " + enabled
            if decision.sink.file in self.decoded:
                message += " (lines of the source decoded from the self-extracting shim)"
            if program is not None:
                message += (
                    f" — in {program}, a program of its own that the submission's documentation or entry script runs"
                )
            at = decision.at or decision.sink
            found.append(finding(decision.rule, at.file, at.line, message, evidence(decision), when=when))
        return found

    def _diagnostic(self, call_site: Step) -> bool:
        parsed = self.sources.get(call_site.file)
        return parsed is not None and logged_as_diagnostic(parsed, call_site)


def _entry_modules(index: FunctionTable) -> list[ModuleIndex]:
    entries = [m for m in index.modules if m.parsed.source.is_entry]
    return entries or [m for m in index.modules if m.module.startswith("train_gpt")] or list(index.modules)


def _has_main_guard(module: ModuleIndex) -> bool:
    return any(
        isinstance(statement, cst.If) and "__main__" in module.parsed.flat_code(statement.test)
        for statement in module.parsed.module.body
    )


def _documented_text(ctx: CheckContext) -> str:
    """README and ``*.sh`` text plus the entry sources: where a helper script's name would be
    mentioned if it is part of the documented run."""
    parts = [s.text for s in ctx.submission.sources if s.is_entry]
    if not ctx.submission.single_file:
        for name in sorted(ctx.submission.files):
            base = name.rsplit("/", 1)[-1].lower()
            if base.endswith(".sh") or (base.startswith("readme") and base.endswith((".md", ".txt", ".rst"))):
                parts.append(read_document_head(ctx.submission.root / name, _DOC_LIMIT))
    return "\n".join(parts)


def _strongest_per_place(findings: list[Finding]) -> list[Finding]:
    """One finding per rule and place: the same helper analysed from two call sites, or once
    reached and once on its own, must not be reported twice."""
    best: dict[tuple[str, str, int], Finding] = {}
    for candidate in findings:
        key = (candidate.rule, candidate.file, candidate.line)
        current = best.get(key)
        if current is None or candidate.severity.rank > current.severity.rank:
            best[key] = candidate
    return sorted(best.values(), key=lambda f: (f.file, f.line, f.rule))
