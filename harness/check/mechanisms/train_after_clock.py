"""PG302: training shards read after the training clock, or during evaluation.

Why: "you aren't allowed to access any training data during evaluation, unless you pay for
those bits in the <16MB limit" (README FAQ), and there is no untimed artifact-creation
phase (valerio #609). GPTQ calibration on training batches after a wall-clock-capped loop
was ruled illegal again and again (#593, #606, #615, #1028); the legal form stops the loop
early to leave a reserved slice (``GPTQ_RESERVE_SECONDS``, merged #1060/#1855). Reading
training shards to pre-fill an eval-time n-gram cache is the same violation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from harness.findings import Severity, Step

from .switches import UNKNOWN, Configuration
from .syntax import Hit, ModuleIndex, call_tail, dotted_name, nodes_within, step, strings_in, target_names, walk
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
_EVAL_FUNCTION = re.compile(r"^(eval|evaluate)|eval_|_eval|score|ttt|test_time", re.IGNORECASE)
_SERIALIZE = {"save", "save_file", "write_bytes", "compress"}


@dataclass(frozen=True)
class Read:
    index: ModuleIndex
    node: cst.CSTNode
    what: str


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

    def __init__(self, indexes: list[ModuleIndex]) -> None:
        self.functions: dict[str, list[tuple[ModuleIndex, cst.FunctionDef]]] = {}
        for index in indexes:
            for function in index.functions:
                self.functions.setdefault(function.name.value, []).append((index, function))
        self._memo: dict[int, list[Read]] = {}

    def reads_of_call(self, call: cst.Call, depth: int = 0) -> list[Read]:
        if depth > 4:
            return []
        found: list[Read] = []
        for index, function in self.functions.get(call_tail(call), []):
            found += self.reads_in_function(index, function, depth)
        return found

    def reads_in_function(self, index: ModuleIndex, function: cst.FunctionDef, depth: int = 0) -> list[Read]:
        key = id(function)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = []
        found = direct_reads(index, function)
        for call in nodes_within(index.calls, function, index):
            if not found:
                found += self.reads_of_call(call, depth + 1)
        self._memo[key] = found
        return found


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


def _region_calls(index: ModuleIndex, scope: cst.CSTNode, after_line: int) -> list[cst.Call]:
    """Calls that run after ``after_line`` in ``scope`` itself (not in functions it defines)."""
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    return [
        c for c in nodes_within(index.calls, scope, index)
        if index.line(c) > after_line and index.enclosing_function(c) is owner
    ]


def find_train_reads(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    data = TrainingData(indexes)
    hits: dict[tuple[str, int], Hit] = {}
    for index in indexes:
        for loop in _training_loops(index):
            scope = index.enclosing_function(loop) or index.parsed.module
            loop_end = index.parsed.positions[loop].end.line  # type: ignore[index]
            reserve = _reserve_state(index, scope, configuration)
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
                    reads = direct_reads(region_index, call) or data.reads_of_call(call)
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
                    reads = [] if key in hits else direct_reads(region_index, call) or data.reads_of_call(call)
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
                        ),
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
        why = f"after the final model is serialized (line {saved_at}), outside the reserved slice `{reserve}`"
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
