"""Rule family PG101–PG106: validation data reaching update, score, artifact and calibration
sinks in an illegal order.

Why one family: all six rules read the same effect timeline built by the data-flow engine in
``harness/check/flow``; only the ordering questions differ. The entry script's module code
(and ``main()`` through it) is the root whose order is judged; functions the entry never
calls are analysed on their own and reported as ``info``, since they do not run. Every
finding is judged under the configuration the submission documents (README run command,
``*.sh``, logs): code that configuration switches off is ``info``, and a finding switched on
by a documented setting names it.
"""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from harness.catalog import finding
from harness.check.context import CheckContext
from harness.check.flow.documented_data import documented_val_training
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.headline import logged_as_diagnostic
from harness.check.flow.ordering import Decision, decide, evidence
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
    switches = Switches(ctx.parsed, ctx.submission.settings, ctx.submission.alternative_settings)
    engine = Engine(index)
    decoded = {p.source.display_name for p in ctx.parsed if p.source.decoded_depth > 0}
    findings: list[Finding] = []
    for module in _entry_modules(index):
        findings.extend(_judge_root(engine, index.top[module], switches, decoded, unreached_in=None))
    documented = _documented_text(ctx)
    for module in _own_programs(index, documented):
        findings.extend(
            _judge_root(
                engine,
                index.top[module],
                switches,
                decoded,
                unreached_in=None,
                program=module.parsed.source.display_name,
            )
        )
    for info in _unreached(index, engine):
        findings.extend(_judge_root(engine, info, switches, decoded, unreached_in=info))
    if engine.analyses >= MAX_ANALYSES:
        entry = ctx.parsed[0].source.display_name
        findings.append(
            finding(
                "PG000",
                entry,
                0,
                f"data-flow analysis stopped after {MAX_ANALYSES} function analyses; "
                "calls beyond that were treated as library calls, so findings may be missing",
                when="analysis-limit",
            )
        )
    findings.extend(documented_val_training(ctx.submission))
    return _strongest_per_place(findings)


def _judge_root(
    engine: Engine,
    root: FuncInfo,
    switches: Switches,
    decoded: set[str],
    unreached_in: FuncInfo | None,
    program: str | None = None,
) -> list[Finding]:
    """One root's findings; a root too deeply nested to walk is reported, not fatal, so the
    other roots are still judged and the submission cannot look clean by accident."""
    try:
        timeline = engine.timeline(root)
    except RecursionError:
        where = root.file if root.node is None else f"{root.file}:{root.line}"
        return [
            finding(
                "PG000",
                root.file,
                root.line,
                f"data-flow analysis of {root.display} ({where}) stopped: nesting too deep",
                when="analysis-limit",
            )
        ]
    trains_params = {info.uid for info in engine.index.all_functions if info.trains_params}
    sources = {m.parsed.source.display_name: m.parsed for m in engine.index.modules}

    def diagnostic(call_site: Step) -> bool:
        parsed = sources.get(call_site.file)
        return parsed is not None and logged_as_diagnostic(parsed, call_site)

    found = [
        _finding(d, switches, decoded, unreached_in=unreached_in) for d in decide(timeline, trains_params, diagnostic)
    ]
    if program is not None:
        found = [
            replace(
                f,
                message=f.message + f" — in {program}, a program of its own that the submission's "
                "documentation or entry script runs",
            )
            for f in found
        ]
    return found


def _entry_modules(index: FunctionTable) -> list[ModuleIndex]:
    entries = [m for m in index.modules if m.parsed.source.is_entry]
    if not entries:
        entries = [m for m in index.modules if m.module.startswith("train_gpt")]
    return entries or list(index.modules)


def _own_programs(index: FunctionTable, documented: str) -> list[ModuleIndex]:
    """Helper scripts with a ``__main__`` guard that the README, a ``*.sh`` file or the entry
    script names: they run as programs of their own, so what they do with validation data is
    judged like the entry's (#168: ``build_prefix_blob.py`` compresses val tokens into the
    blob shipped beside the weights). A script nobody mentions stays an unreached helper."""
    programs: list[ModuleIndex] = []
    for module in index.modules:
        source = module.parsed.source
        if source.is_entry or not _has_main_guard(module):
            continue
        base = source.display_name.rsplit("/", 1)[-1]
        if base in documented:
            programs.append(module)
    return programs


def _has_main_guard(module: ModuleIndex) -> bool:
    for statement in module.parsed.module.body:
        if isinstance(statement, cst.If) and "__main__" in module.parsed.flat_code(statement.test):
            return True
    return False


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


def _unreached(index: FunctionTable, engine: Engine) -> list[FuncInfo]:
    return [
        info
        for info in index.all_functions
        if info.node is not None and info.parent is None and info.uid not in engine.reached
    ]


def _finding(decision: Decision, switches: Switches, decoded: set[str], unreached_in: FuncInfo | None) -> Finding:
    sink = decision.sink
    when = decision.when
    message = decision.message
    outcome = switches.outcome(sink.conds)
    if unreached_in is not None:
        when = "not-run"
        message += f" — in {unreached_in.display}, which the entry script never calls"
    elif not outcome.runs:
        when = "not-run"
        message += f" — not run in the documented configuration: {outcome.disabled_by}"
    elif outcome.enabled_by:
        message += " — enabled by " + ", ".join(f"{s.name}={s.value} in {s.file}:{s.line}" for s in outcome.enabled_by)
    if sink.file in decoded:
        message += " (lines of the source decoded from the self-extracting shim)"
    where = decision.at or sink
    return finding(decision.rule, where.file, where.line, message, evidence(decision), when=when)


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
