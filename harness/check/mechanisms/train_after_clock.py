"""PG302: training shards read after the training clock, or during evaluation.

Why: "you aren't allowed to access any training data during evaluation, unless you pay for
those bits in the <16MB limit" (README FAQ), and there is no untimed artifact-creation
phase (valerio #609). GPTQ calibration on training batches after a wall-clock-capped loop
was ruled illegal again and again (#593, #606, #615, #1028); the legal form stops the loop
early to leave a reserved slice (``GPTQ_RESERVE_SECONDS``, merged #1060/#1855) or runs it
with a training budget below 600 s (``MAX_WALLCLOCK_SECONDS=590``, the same reserve by another
name). Reading training shards to pre-fill an eval-time n-gram cache is the same violation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from harness.findings import Severity, Step

from .switches import UNKNOWN, Configuration
from .syntax import (
    Hit,
    ModuleIndex,
    assigned_value,
    call_tail,
    dotted_name,
    last_identifier,
    nodes_within,
    step,
    strings_in,
    target_names,
    walk,
)
from .targets import value_names

_READ_CALLS = {"next_batch", "next_tokens"}
_LOADER_CLASS = re.compile(r"(Token|Shard|Distributed\w*|Train\w*)(Stream|Loader)$")
_FILE_CALLS = {"load_data_shard", "glob", "fromfile", "memmap", "load_shard", "iglob"}
TRAIN_WORDS = re.compile(r"fineweb_train|train_files|train_pattern|train_glob|train_shards|train_bin|train_path", re.IGNORECASE)
_VAL_WORDS = re.compile(r"val", re.IGNORECASE)
_WALLCLOCK = re.compile(
    r"wallclock|max_time|time_limit|time_budget|stop_after|deadline|train_time|training_time|elapsed|max_train_sec",
    re.IGNORECASE,
)
_RESERVE = re.compile(r"reserve(?!d)", re.IGNORECASE)  # not torch.cuda.memory_reserved
# The training-time budget the loop stops on (not the clock reading it is compared with:
# ``training_time_ms``/``elapsed`` are measurements, so they are left out).
_BUDGET = re.compile(
    r"wallclock|max_time|time_limit|time_budget|train_budget|max_train_sec|max_train_time|max_train_min",
    re.IGNORECASE,
)
_MILLISECONDS = re.compile(r"(?:^|_)ms(?:$|_)|millis", re.IGNORECASE)
_MINUTES = re.compile(r"minute|(?:^|_)min(?:$|_)", re.IGNORECASE)
TRAIN_BUDGET_SECONDS = 600.0  # R-TIME-TRAIN: "under 10 minutes on 8xH100s"
_EVAL_FUNCTION = re.compile(r"^(eval|evaluate)|eval_|_eval|score|ttt|test_time", re.IGNORECASE)
_SERIALIZE = {"save", "save_file", "write_bytes", "compress"}


@dataclass(frozen=True)
class Read:
    index: ModuleIndex
    node: cst.CSTNode
    what: str
    via: tuple[Step, ...] = ()  # where a training-shard pattern handed to a helper is opened


def _mentions(expr: cst.CSTNode, pattern: re.Pattern[str]) -> bool:
    words = [n.value for n in value_names(expr)] + [n.attr.value for n in walk(expr) if isinstance(n, cst.Attribute)]
    return any(pattern.search(w) for w in words) or any(pattern.search(s) for s in strings_in(expr))


def direct_reads(index: ModuleIndex, scope: cst.CSTNode) -> list[Read]:
    reads: list[Read] = []
    for call in nodes_within(index.calls, scope, index):
        tail = call_tail(call)
        if tail in _READ_CALLS and isinstance(call.func, cst.Attribute):
            if not _mentions(call.func.value, _VAL_WORDS):
                reads.append(Read(index, call, index.code(call, 60)))
        elif _LOADER_CLASS.search(tail):
            if _mentions(call, TRAIN_WORDS) or not _mentions(call, _VAL_WORDS):
                reads.append(Read(index, call, index.code(call, 60)))
        elif tail in _FILE_CALLS and _mentions(call, TRAIN_WORDS):
            reads.append(Read(index, call, index.code(call, 60)))
    return reads


class TrainingData:
    """Which submission functions read training data, directly or through their callees."""

    def __init__(self, indexes: list[ModuleIndex], train_keys: set[str] | None = None) -> None:
        self.functions: dict[str, list[tuple[ModuleIndex, cst.FunctionDef]]] = {}
        for index in indexes:
            for function in index.functions:
                self.functions.setdefault(function.name.value, []).append((index, function))
        self.train_keys = train_keys or set()
        self._memo: dict[int, list[Read]] = {}

    def reads_of_call(self, call: cst.Call, depth: int = 0, index: ModuleIndex | None = None) -> list[Read]:
        if depth > 4:
            return []
        found: list[Read] = []
        for callee_index, function in self.functions.get(call_tail(call), []):
            found += self.reads_in_function(callee_index, function, depth)
            if not found and index is not None:
                found += self._reads_through_arguments(index, call, callee_index, function, depth)
        return found

    def _is_train_path(self, expr: cst.CSTNode) -> bool:
        """``args.train_files``, ``"fineweb_train_*.bin"``, or a minified field bound to one."""
        if _mentions(expr, TRAIN_WORDS):
            return True
        word = last_identifier(expr)
        return word is not None and word.lower() in self.train_keys

    def _reads_through_arguments(
        self, index: ModuleIndex, call: cst.Call, callee_index: ModuleIndex, function: cst.FunctionDef, depth: int
    ) -> list[Read]:
        """``prefill_counts(args.train_files, …)`` where the helper globs/opens/loads that
        parameter: the training-shard pattern is read through the helper even though the
        helper's own code never names training data (#593; the README FAQ forbids training
        data at eval time). Followed through further helpers the parameter is passed on to."""
        tainted = _bound_parameters(call, function, self._is_train_path)
        opened = _opens_parameters(callee_index, function, tainted, self, depth)
        if opened is None:
            return []
        opens = step(callee_index, opened[0], f"opens the training-shard pattern: {callee_index.code(opened[0], 60)}")
        return [Read(index, call, index.code(call, 60), opened[1] + (opens,))]

    def reads_in_function(self, index: ModuleIndex, function: cst.FunctionDef, depth: int = 0) -> list[Read]:
        key = id(function)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = []
        found = direct_reads(index, function)
        for call in nodes_within(index.calls, function, index):
            if not found:
                found += self.reads_of_call(call, depth + 1, index)
        self._memo[key] = found
        return found


_OPEN_CALLS = _FILE_CALLS | {"open", "load", "Path"}


def _bound_parameters(call: cst.Call, function: cst.FunctionDef, wanted: Callable[[cst.CSTNode], bool]) -> set[str]:
    """Parameters of ``function`` that receive an argument of ``call`` satisfying ``wanted``."""
    params = [p.name.value for p in function.params.params]
    if params and params[0] in {"self", "cls"} and isinstance(call.func, cst.Attribute):
        params = params[1:]
    names = {p.name.value for p in function.params.params} | {p.name.value for p in function.params.kwonly_params}
    bound: set[str] = set()
    position = 0
    for arg in call.args:
        if arg.star:
            break
        if arg.keyword is None:
            if position < len(params) and wanted(arg.value):
                bound.add(params[position])
            position += 1
        elif arg.keyword.value in names and wanted(arg.value):
            bound.add(arg.keyword.value)
    return bound


def _opens_parameters(
    index: ModuleIndex, function: cst.FunctionDef, params: set[str], data: TrainingData, depth: int
) -> tuple[cst.Call, tuple[Step, ...]] | None:
    """The first call in ``function`` that globs/opens/loads one of ``params`` (or hands it
    to a helper that does), with the steps of the helpers in between."""
    if not params or depth > 4:
        return None
    rebound = {n for s in nodes_within(index.assigns, function, index) for n in target_names(s)}
    live = params - rebound
    if not live:
        return None
    for call in nodes_within(index.calls, function, index):
        if index.enclosing_function(call) is not function:
            continue
        passes = [a for a in call.args if any(n.value in live for n in value_names(a.value))]
        if not passes:
            continue
        tail = call_tail(call)
        if tail in _OPEN_CALLS or _LOADER_CLASS.search(tail):
            return call, ()
        for callee_index, callee in data.functions.get(tail, []):
            if callee is function:
                continue
            inner = _bound_parameters(call, callee, lambda e: any(n.value in live for n in value_names(e)))
            opened = _opens_parameters(callee_index, callee, inner, data, depth + 1)
            if opened is not None:
                return opened[0], (step(index, call, f"passed on to {tail}"),) + opened[1]
    return None


_CLOCK_CALLS = {"time", "perf_counter", "monotonic", "perf_counter_ns", "time_ns"}


def _compares_clock(index: ModuleIndex, loop: cst.CSTNode) -> bool:
    """A comparison against the clock inside the loop: ``elapsed_ms >= max_wallclock_ms``,
    ``time.perf_counter() - t0 >= budget``. Logging the time is not a stop condition."""
    for comparison in nodes_within(index.comparisons, loop, index):
        for node in walk(comparison):
            if isinstance(node, cst.Call) and call_tail(node) in _CLOCK_CALLS:
                return True
            if isinstance(node, cst.Name) and _WALLCLOCK.search(node.value):
                return True
            if isinstance(node, cst.Attribute) and _WALLCLOCK.search(node.attr.value):
                return True
    return False


def _training_loops(index: ModuleIndex) -> list[cst.CSTNode]:
    """Loops that update the model (backward + step) and stop on the wall clock."""
    loops = []
    for loop in index.loops:
        tails = {call_tail(c) for c in nodes_within(index.calls, loop, index)}
        if "backward" in tails and "step" in tails and _compares_clock(index, loop):
            loops.append(loop)
    return [l for l in loops if not any(o is not l and nodes_within([l], o, index) for o in loops)]


def _reserve_state(index: ModuleIndex, scope: cst.CSTNode, configuration: Configuration) -> str | None:
    """A description of the reserved calibration slice, or None when there is none (or it is 0)."""
    # Minified code binds GPTQ_RESERVE_SECONDS to a one-letter field: the env name decides.
    reserve_keys = {
        key for key, bindings in configuration.bindings.items()
        if any(_RESERVE.search(text) for b in bindings for text in strings_in(b.expr))
    }

    def is_reserve(word: str) -> bool:
        return bool(_RESERVE.search(word)) or word.lower() in reserve_keys

    candidates = [
        n for n in walk(scope)
        if (isinstance(n, cst.Attribute) and is_reserve(n.attr.value)) or (isinstance(n, cst.Name) and is_reserve(n.value))
    ]
    for node in candidates:
        if isinstance(index.parent(node), cst.Attribute) and index.parent(node).attr is node:  # type: ignore[union-attr]
            continue
        value = configuration.evaluate(node).value
        if value is UNKNOWN or (isinstance(value, (int, float)) and value > 0):
            return dotted_name(node) or index.code(node)
    return None


def _budget_state(
    index: ModuleIndex, loop: cst.CSTNode, scope: cst.CSTNode, configuration: Configuration
) -> str | None:
    """A description of a training budget set below 600 s, or None.

    ``MAX_WALLCLOCK_SECONDS=590`` on the README's run command is the reserve under another
    name: the loop stops 10 s early and calibration on training batches fits in the 600 s
    (R-TIME-TRAIN, the legal counterpart of #593/#606 next to ``GPTQ_RESERVE_SECONDS`` in
    #1060/#1855). The budget is read where the loop's clock check reads it, through local
    names bound before the loop (``max_wallclock_ms = 1000.0 * args.max_wallclock_seconds``),
    and evaluated under the documented settings. Every budget whose value is known must be
    below 600 s (and above 0, which disables the cap in the baseline); one at 600 s or an
    unknown one leaves no reserve."""
    budget_keys = {
        key for key, bindings in configuration.bindings.items()
        if any(_BUDGET.search(text) for b in bindings for text in strings_in(b.expr))
    }
    locals_: dict[str, list[cst.BaseExpression]] = {}
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    for statement in nodes_within(index.assigns, scope, index):
        value = assigned_value(statement)
        if value is None or index.enclosing_function(statement) is not owner:
            continue
        for name in target_names(statement):
            locals_.setdefault(name, []).append(value)

    budgets: list[tuple[cst.CSTNode, float]] = []
    pending = [
        c for c in nodes_within(index.comparisons, loop, index)
        if _compares_clock(index, c) or any(_BUDGET.search(last_identifier(n) or "") for n in walk(c)
                                             if isinstance(n, (cst.Name, cst.Attribute)))
    ]  # ``approx_ms >= train_budget_ms`` beside a ``stop_after_step`` flag: the budget is here
    seen: set[int] = set()
    for _ in range(3):  # the comparison, then up to two local hops
        following: list[cst.CSTNode] = []
        for expr in pending:
            for node in walk(expr):
                if id(node) in seen or not isinstance(node, (cst.Name, cst.Attribute)):
                    continue
                seen.add(id(node))
                parent = index.parent(node)
                if isinstance(parent, cst.Attribute) and parent.attr is node:
                    continue
                word = last_identifier(node) or ""
                if _RESERVE.search(word):
                    continue
                is_budget = bool(_BUDGET.search(word)) or word.lower() in budget_keys
                value = configuration.evaluate(node).value if is_budget else UNKNOWN
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    budgets.append((node, _in_seconds(word, value, configuration)))
                elif isinstance(node, cst.Name):
                    following += locals_.get(node.value, [])
        pending = following
    if budgets and all(0 < seconds < TRAIN_BUDGET_SECONDS for _, seconds in budgets):
        node, seconds = budgets[0]
        evaluation = configuration.evaluate(node)
        documented = [f"{name}={value} in {s.file}:{s.line}" for name, value, s in evaluation.used if s is not None]
        where = f" ({', '.join(documented)})" if documented else ""
        return f"`{dotted_name(node) or index.code(node)}` = {seconds:g} s of the 600 s{where}"
    return None


def _in_seconds(word: str, value: float, configuration: Configuration) -> float:
    """The budget in seconds, from the unit its name (or, minified, its env key) carries."""
    texts = [word] + [t for b in configuration.bindings.get(word.lower(), []) for t in strings_in(b.expr)]
    if any(_MILLISECONDS.search(t) for t in texts):
        return value / 1000.0
    if any(_MINUTES.search(t) for t in texts):
        return value * 60.0
    return float(value)


def _region_calls(index: ModuleIndex, scope: cst.CSTNode, after_line: int) -> list[cst.Call]:
    """Calls that run after ``after_line`` in ``scope`` itself (not in functions it defines)."""
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    return [
        c for c in nodes_within(index.calls, scope, index)
        if index.line(c) > after_line and index.enclosing_function(c) is owner
    ]


def find_train_reads(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    data = TrainingData(indexes, _train_path_keys(configuration))
    hits: dict[tuple[str, int], Hit] = {}
    for index in indexes:
        for loop in _training_loops(index):
            scope = index.enclosing_function(loop) or index.parsed.module
            loop_end = index.parsed.positions[loop].end.line  # type: ignore[index]
            reserve = _reserve_state(index, scope, configuration) or _budget_state(index, loop, scope, configuration)
            loaders = _loop_loaders(index, loop)
            train_paths = _train_path_keys(configuration)
            regions = [(index, scope, loop_end)]
            if isinstance(scope, cst.FunctionDef):
                regions += _caller_regions(indexes, scope.name.value)
            serialized_in_scope = False
            for region_index, region_scope, after in regions:
                calls = _region_calls(region_index, region_scope, after)
                saved_at = min((region_index.line(c) for c in calls if call_tail(c) in _SERIALIZE), default=None)
                if region_scope is scope:
                    serialized_in_scope = saved_at is not None
                elif serialized_in_scope:
                    saved_at = after  # the model was already written inside the training function
                for call in calls:
                    if reserve is not None and (saved_at is None or region_index.line(call) <= saved_at):
                        continue
                    reads = direct_reads(region_index, call) or data.reads_of_call(call, index=region_index)
                    if not reads and region_scope is scope:
                        reads = _loader_reuse(region_index, call, loaders) or _train_path_use(region_index, call, train_paths)
                    if not reads:
                        continue
                    key = (region_index.name, region_index.line(call))
                    if key in hits:
                        continue
                    hits[key] = _after_clock_hit(index, loop, region_index, call, reads[0], reserve, saved_at)
        for save in _final_saves(index):
            scope = index.enclosing_function(save) or index.parsed.module
            regions = [(index, scope, index.line(save))]
            if isinstance(scope, cst.FunctionDef):
                regions += _caller_regions(indexes, scope.name.value)
            for region_index, region_scope, after in regions:
                for call in _region_calls(region_index, region_scope, after):
                    key = (region_index.name, region_index.line(call))
                    reads = [] if key in hits else direct_reads(region_index, call) or data.reads_of_call(
                        call, index=region_index
                    )
                    if reads:
                        hits[key] = _after_save_hit(index, save, region_index, call, reads[0])
        for function in index.functions:
            if not _EVAL_FUNCTION.search(function.name.value):
                continue
            for read in data.reads_in_function(index, function):
                key = (read.index.name, read.index.line(read.node))
                if key not in hits:
                    hits[key] = Hit(
                        rule="PG302",
                        severity=Severity.ERROR,
                        index=read.index,
                        node=read.index.enclosing_statement(read.node),
                        message=f"evaluation function `{function.name.value}` reads training data (`{read.what}`)",
                        path=(
                            step(index, function, f"evaluation function {function.name.value}"),
                            step(read.index, read.node, "training shard read during evaluation"),
                        ) + read.via,
                    )
    return list(hits.values())


def _loop_loaders(index: ModuleIndex, loop: cst.CSTNode) -> dict[str, set[str]]:
    """Objects the training loop draws its batches from (``x, y = tl.nb(n)``): whatever
    the class and method are called (minified code renames both), that object *is* the
    training stream, so using it after the clock reads training data (#593, #606).
    Maps each loader name to the methods that drew batches from it."""
    loaders: dict[str, set[str]] = {}
    for statement in nodes_within(index.assigns, loop, index):
        if not isinstance(statement, cst.Assign) or len(statement.targets) != 1:
            continue
        if not isinstance(statement.targets[0].target, cst.Tuple):
            continue
        if any(_MODEL_OUTPUT.search(n) for n in target_names(statement)):
            continue  # ``loss, aux = model.forward_aux(x, y)``: the model, not a batch source
        value = statement.value
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and isinstance(value.func.value, cst.Name):
            name = value.func.value.value
            if not _VAL_WORDS.search(name):
                loaders.setdefault(name, set()).add(value.func.attr.value)
    scope = index.enclosing_function(loop) or index.parsed.module
    for call in nodes_within(index.calls, scope, index):
        if isinstance(call.func, cst.Name) and call.func.value in loaders:
            loaders.pop(call.func.value, None)  # called like a model: ``m(x, y)``
        elif (
            isinstance(call.func, cst.Attribute)
            and isinstance(call.func.value, cst.Name)
            and call.func.attr.value in _MODEL_METHODS
        ):
            loaders.pop(call.func.value.value, None)
    return loaders


def _train_path_keys(configuration: Configuration) -> set[str]:
    """Config fields bound to a training-shard path (``tf = os.path.join(..., "fineweb_train_*.bin")``),
    whatever minification named them."""
    return {
        key for key, bindings in configuration.bindings.items()
        if any(TRAIN_WORDS.search(text) for b in bindings for text in strings_in(b.expr))
    }


_LOGGING = {"print", "log", "log0", "info", "debug", "warning", "write"}


def _train_path_use(index: ModuleIndex, call: cst.Call, keys: set[str]) -> list[Read]:
    """``TL(a.tf)`` after the clock: the training-shard pattern handed to a loader (#593)."""
    if not keys or call_tail(call) in _LOGGING:
        return []
    for arg in call.args:
        node = arg.value
        word = node.attr.value if isinstance(node, cst.Attribute) else node.value if isinstance(node, cst.Name) else None
        if word is not None and word.lower() in keys:
            return [Read(index, call, index.code(call, 60))]
    return []


_MODEL_OUTPUT = re.compile(r"loss|logit|out|aux|hidden|grad", re.IGNORECASE)
_MODEL_METHODS = {"backward", "step", "zero_grad", "parameters", "named_parameters", "state_dict", "train", "eval", "forward"}


def _loader_reuse(index: ModuleIndex, call: cst.Call, loaders: dict[str, set[str]]) -> list[Read]:
    """``hs(m, tl, n)`` or ``tl.nb(n)`` after the loop: the training loader used again
    (``tl.close()`` is not a read, so only the batch-drawing methods count)."""
    if not loaders:
        return []
    receiver = call.func.value if isinstance(call.func, cst.Attribute) else None
    if isinstance(receiver, cst.Name) and isinstance(call.func, cst.Attribute) and call.func.attr.value in loaders.get(receiver.value, set()):
        return [Read(index, call, index.code(call, 60))]
    for arg in call.args:
        if isinstance(arg.value, cst.Name) and arg.value.value in loaders:
            return [Read(index, call, index.code(call, 60))]
    return []


_FINAL_ARTIFACT = re.compile(r"final|quant|int[4-8]|ptz|artifact|compress", re.IGNORECASE)


def _final_saves(index: ModuleIndex) -> list[cst.Call]:
    """``torch.save(..., "final_model.int6.ptz")`` outside any loop: the train→eval boundary
    (periodic checkpoints inside the training loop are not)."""
    saves = []
    for call in index.calls:
        if call_tail(call) not in {"save", "save_file"}:
            continue
        if any(isinstance(a, (cst.For, cst.While)) for a in index.ancestors(call)):
            continue
        if _FINAL_ARTIFACT.search(index.code(call, 400)):
            saves.append(call)
    return saves


def _after_save_hit(index: ModuleIndex, save: cst.Call, region_index: ModuleIndex, call: cst.Call, read: Read) -> Hit:
    return _late_read_hit(
        step(index, save, "final model serialized: training is over"),
        step(region_index, call, "called after serialization"),
        region_index, call, read,
        f"after the final model is serialized (line {index.line(save)})",
    )


def _late_read_hit(boundary: Step, call_step: Step, region_index: ModuleIndex, call: cst.Call, read: Read,
                   when: str) -> Hit:
    """A PG302 hit: the boundary (save or clock), the late call, and the read it leads to."""
    path = [boundary, call_step]
    if read.node is not call:
        path.append(step(read.index, read.node, f"reads training data: {read.what}"))
    path += read.via
    return Hit(
        rule="PG302",
        severity=Severity.ERROR,
        index=region_index,
        node=region_index.enclosing_statement(call),
        message=f"training data is read (`{read.what}`) {when}",
        path=tuple(path),
    )


def _caller_regions(indexes: list[ModuleIndex], name: str) -> list[tuple[ModuleIndex, cst.CSTNode, int]]:
    regions = []
    for index in indexes:
        for call in index.calls:
            if call_tail(call) == name:
                caller = index.enclosing_function(call) or index.parsed.module
                regions.append((index, caller, index.line(call)))
    return regions


def _after_clock_hit(
    index: ModuleIndex,
    loop: cst.CSTNode,
    region_index: ModuleIndex,
    call: cst.Call,
    read: Read,
    reserve: str | None,
    saved_at: int | None,
) -> Hit:
    if reserve is not None:
        shown = reserve if reserve.startswith("`") else f"`{reserve}`"  # a budget below 600 s comes described
        why = f"after the final model is serialized (line {saved_at}), outside the reserved slice {shown}"
    else:
        why = (
            f"after the wall-clock-capped training loop (line {index.line(loop)}) with no reserved slice of the "
            "training time for it"
        )
    return _late_read_hit(
        step(index, loop, "training loop stops on the wall clock"),
        step(region_index, call, "called after the training clock"),
        region_index, call, read, why,
    )
