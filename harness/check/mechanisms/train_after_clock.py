"""PG302: training shards read after the training clock, or during evaluation.

Why: "you aren't allowed to access any training data during evaluation, unless you pay for
those bits in the <16MB limit" (README FAQ), and there is no untimed artifact-creation
phase (valerio #609). What decided #593 (and #606, #615, #1028) was the *time budget*, not
the amount nor the use: the loop trained for the full 600 s and the GPTQ Hessians were then
collected from training batches outside it (#606 was only 3.6 s of calibration). Accepted
records do the same calibration on training batches after the loop, but the loop stops
early to leave that slice inside the 600 s (``GPTQ_RESERVE_SECONDS``/``GPTQ_RESERVE_MS``,
merged #1060/#1855/#2135, or ``MAX_WALLCLOCK_SECONDS=590``). So a late read is an error when
the loop's budget is known to be the full 600 s with no reserve, a warning when the budget
cannot be read statically, and fine inside a reserve until the artifact is written. What
counts as a read is decided in ``train_reads``; an evaluation function is recognised by what
it does (scores validation tokens, trains nothing), not by its name (issue 12).
"""

from __future__ import annotations

import re

import libcst as cst

from harness.check.switches import UNKNOWN
from harness.check.switches.reach import Configuration
from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import (
    assigned_value,
    call_tail,
    dotted_name,
    last_identifier,
    number_value,
    strings_in,
    target_names,
)
from harness.findings import Step

from .hit import Hit, step
from .targets import is_scoring_function
from .train_reads import (
    Read,
    TrainingData,
    direct_reads,
    loader_reuse,
    loop_loaders,
    train_path_keys,
    train_path_use,
)

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
_SERIALIZE = {"save", "save_file", "write_bytes", "compress"}
# Validation data as the code holds it: ``val_tokens``, ``h.val_files``, ``x_val`` (not ``eval``,
# ``interval`` nor a ``valid`` mask).
_VAL_DATA = re.compile(r"(?:^|_)val(?:_|$|idation)", re.IGNORECASE)

Region = tuple[ModuleIndex, cst.CSTNode, cst.CSTNode]  # (index, scope, boundary node in scope)


_CLOCK_CALLS = {"time", "perf_counter", "monotonic", "perf_counter_ns", "time_ns"}


def _reads_clock(expr: cst.CSTNode) -> bool:
    return any(isinstance(n, cst.Call) and call_tail(n) in _CLOCK_CALLS for n in walk(expr))


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
        key
        for key, bindings in configuration.bindings.items()
        if any(_RESERVE.search(text) for b in bindings for text in strings_in(b.expr))
    }

    def is_reserve(word: str) -> bool:
        return bool(_RESERVE.search(word)) or word.lower() in reserve_keys

    candidates = [
        n
        for n in walk(scope)
        if (isinstance(n, cst.Attribute) and is_reserve(n.attr.value))
        or (isinstance(n, cst.Name) and is_reserve(n.value))
    ]
    for node in candidates:
        parent = index.parent(node)
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            continue
        value = configuration.evaluate(node).value
        if value is UNKNOWN or (isinstance(value, (int, float)) and value > 0):
            return dotted_name(node) or index.code(node)
    return None


def _budget_state(
    index: ModuleIndex, loop: cst.CSTNode, scope: cst.CSTNode, configuration: Configuration
) -> tuple[str | None, bool]:
    """A description of a training budget set below 600 s (or None), and whether any budget
    of the loop could be read at all.

    ``MAX_WALLCLOCK_SECONDS=590`` on the README's run command is the reserve under another
    name: the loop stops 10 s early and calibration on training batches fits in the 600 s
    (R-TIME-TRAIN, the legal counterpart of #593/#606 next to ``GPTQ_RESERVE_SECONDS`` in
    #1060/#1855). The budget is read where the loop's clock check reads it, through local
    names bound before the loop (``max_wallclock_ms = 1000.0 * args.max_wallclock_seconds``),
    and evaluated under the documented settings. Every budget whose value is known must be
    below 600 s (and above 0, which disables the cap in the baseline); one at 600 s leaves no
    reserve, and none known at all leaves the question open (a warning, not an error)."""
    budget_keys = {
        key
        for key, bindings in configuration.bindings.items()
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
        c
        for c in nodes_within(index.comparisons, loop, index)
        if _compares_clock(index, c)
        or any(_BUDGET.search(last_identifier(n) or "") for n in walk(c) if isinstance(n, (cst.Name, cst.Attribute)))
    ]  # ``approx_ms >= train_budget_ms`` beside a ``stop_after_step`` flag: the budget is here
    budgets += _literal_budgets(pending)
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
                amount = configuration.evaluate(node).value if is_budget else UNKNOWN
                if is_budget and amount is UNKNOWN and isinstance(node, cst.Name) and owner is not None:
                    amount = _parameter_default(owner, node.value, configuration)
                if isinstance(amount, (int, float)) and not isinstance(amount, bool):
                    budgets.append((node, _in_seconds(word, amount, configuration)))
                elif isinstance(node, cst.Name):
                    following += locals_.get(node.value, [])
        pending = following
    if budgets and all(0 < seconds < TRAIN_BUDGET_SECONDS for _, seconds in budgets):
        node, seconds = budgets[0]
        evaluation = configuration.evaluate(node)
        documented = [f"{name}={value} in {s.file}:{s.line}" for name, value, s in evaluation.used if s is not None]
        where = f" ({', '.join(documented)})" if documented else ""
        return f"`{dotted_name(node) or index.code(node)}` = {seconds:g} s of the 600 s{where}", True
    return None, bool(budgets)


def _parameter_default(function: cst.FunctionDef, name: str, configuration: Configuration) -> object:
    """``def train(..., max_wallclock_seconds=600.0)``: the default is the budget when no call
    in the submission passes that parameter (a call that does, or passes ``**kwargs``, leaves
    it unknown)."""
    params = list(function.params.params) + list(function.params.kwonly_params)
    param = next((p for p in params if p.name.value == name), None)
    if param is None or param.default is None or number_value(param.default) is None:
        return UNKNOWN
    position = [p.name.value for p in function.params.params].index(name) if param in function.params.params else None
    for index in configuration.indexes:
        for call in index.calls:
            if call_tail(call) != function.name.value:
                continue
            for i, arg in enumerate(call.args):
                if arg.star or (arg.keyword is not None and arg.keyword.value == name):
                    return UNKNOWN
                if arg.keyword is None and position is not None and i >= position - 1:
                    return UNKNOWN  # positional reach (a method call binds ``self`` first)
    return number_value(param.default)


def _literal_budgets(comparisons: list[cst.CSTNode]) -> list[tuple[cst.CSTNode, float]]:
    """``time.perf_counter() - t0 >= 600``: a number compared with the clock reading is the
    budget; above 1000 it can only be milliseconds (no budget is over 600 s)."""
    found: list[tuple[cst.CSTNode, float]] = []
    for comparison in comparisons:
        if not isinstance(comparison, cst.Comparison) or not _reads_clock(comparison):
            continue
        for side in [comparison.left] + [t.comparator for t in comparison.comparisons]:
            value = number_value(side)
            if value is not None and value > 0:
                found.append((side, value / 1000.0 if value > 1000 else float(value)))
    return found


def _in_seconds(word: str, value: float, configuration: Configuration) -> float:
    """The budget in seconds, from the unit its name (or, minified, its env key) carries."""
    texts = [word] + [t for b in configuration.bindings.get(word.lower(), []) for t in strings_in(b.expr)]
    if any(_MILLISECONDS.search(t) for t in texts):
        return value / 1000.0
    if any(_MINUTES.search(t) for t in texts):
        return value * 60.0
    return float(value)


def _exclusive_spans(index: ModuleIndex, boundary: cst.CSTNode, scope: cst.CSTNode) -> list[tuple[int, int]]:
    """Source spans that never run in the same pass as ``boundary``: the other arm of every
    ``if``/``else`` it sits in (a ``QUANTIZE_ONLY`` branch that serializes a loaded checkpoint
    is not followed by the training branch below it, #1953)."""
    spans: list[tuple[int, int]] = []
    child: cst.CSTNode = boundary
    for ancestor in index.ancestors(boundary):
        if ancestor is scope:
            break
        if isinstance(ancestor, cst.If):
            other = ancestor.orelse if child is ancestor.body else ancestor.body if child is ancestor.orelse else None
            where = index.parsed.positions.offsets(other) if other is not None else None
            if where is not None:
                spans.append(where)
        child = ancestor
    return spans


def _region_calls(index: ModuleIndex, scope: cst.CSTNode, boundary: cst.CSTNode) -> list[cst.Call]:
    """Calls that run after ``boundary`` in ``scope`` itself (not in functions it defines,
    nor in a branch exclusive with the boundary's)."""
    offsets = index.parsed.positions.offsets
    where = offsets(boundary)
    if where is None:
        return []
    after = where[1]
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    excluded = _exclusive_spans(index, boundary, scope)
    calls = []
    for call in nodes_within(index.calls, scope, index):
        start = (offsets(call) or (-1, -1))[0]
        if start <= after or index.enclosing_function(call) is not owner:
            continue
        if any(low <= start <= high for low, high in excluded):
            continue
        calls.append(call)
    return calls


def _last_save(
    index: ModuleIndex, calls: list[cst.Call], configuration: Configuration, data: TrainingData
) -> cst.Call | None:
    """The last serialization among ``calls`` (a raw ``final_model.pt`` checkpoint written
    before GPTQ calibration is not the artifact; the quantized write after it is, #1060),
    a helper that writes counting as one (``export_artifact(...)``). A write the documented
    configuration switches off (``SAVE_POST_TRAIN_CHECKPOINT`` left at 0, #843) never
    happens, so it marks nothing."""
    saves = [
        c
        for c in calls
        if (call_tail(c) in _SERIALIZE or any(_writes(i, f, data, 1) for i, f in data.callees(c)))
        and _runs(index, c, configuration)
    ]
    return saves[-1] if saves else None


def _runs(index: ModuleIndex, node: cst.CSTNode, configuration: Configuration) -> bool:
    return configuration.node_state(index, node)[0] is not False


def _caller_regions(indexes: list[ModuleIndex], name: str) -> list[Region]:
    regions: list[Region] = []
    for index in indexes:
        for call in index.calls:
            if call_tail(call) == name:
                caller = index.enclosing_function(call) or index.parsed.module
                regions.append((index, caller, call))
    return regions


def _late_reads(
    data: TrainingData, index: ModuleIndex, call: cst.Call, loaders: dict[str, set[str]] | None, train_paths: set[str]
) -> list[Read]:
    reads = direct_reads(index, call) or data.reads_of_call(call, index=index)
    if not reads and loaders is not None:
        reads = loader_reuse(index, call, loaders, data) or train_path_use(index, call, train_paths)
    return reads


def find_train_reads(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    train_paths = train_path_keys(configuration)
    data = TrainingData(indexes, train_paths)
    hits: dict[tuple[str, int], Hit] = {}
    for index in indexes:
        for loop in _training_loops(index):
            _after_clock(indexes, index, loop, data, configuration, train_paths, hits)
        for save in _final_saves(index):
            if _runs(index, save, configuration):
                _after_save(indexes, index, save, data, configuration, hits)
        for function, read in _evaluation_reads(index, data):
            key = (read.index.name, read.index.line(read.node))
            if key not in hits:
                hits[key] = Hit(
                    rule="PG302",
                    index=read.index,
                    node=read.index.enclosing_statement(read.node),
                    message=f"evaluation function `{function.name.value}` reads training data (`{read.what}`)",
                    path=(
                        step(index, function, f"evaluation function {function.name.value} (scores validation tokens)"),
                        step(read.index, read.node, "training shard read during evaluation"),
                    )
                    + read.via,
                )
    return list(hits.values())


def _after_clock(
    indexes: list[ModuleIndex],
    index: ModuleIndex,
    loop: cst.CSTNode,
    data: TrainingData,
    configuration: Configuration,
    train_paths: set[str],
    hits: dict[tuple[str, int], Hit],
) -> None:
    """Training reads after one wall-clock-capped loop: in its function, then in the callers
    after the call (the loop usually sits in ``train_model`` and calibration in its caller)."""
    scope = index.enclosing_function(loop) or index.parsed.module
    reserve = _reserve_state(index, scope, configuration)
    budget_known = True
    if reserve is None:
        reserve, budget_known = _budget_state(index, loop, scope, configuration)
    loaders = loop_loaders(index, loop)
    regions: list[Region] = [(index, scope, loop)]
    if isinstance(scope, cst.FunctionDef):
        regions += _caller_regions(indexes, scope.name.value)
    serialized_in_scope = False
    for region_index, region_scope, boundary in regions:
        calls = _region_calls(region_index, region_scope, boundary)
        last = _last_save(region_index, calls, configuration, data)
        saved_at = region_index.line(last) if last is not None else None
        if region_scope is scope:
            serialized_in_scope = saved_at is not None
        elif serialized_in_scope:
            saved_at = region_index.line(boundary)  # the model was already written inside the training function
        for call in calls:
            if reserve is not None and (saved_at is None or region_index.line(call) <= saved_at):
                continue
            reads = _late_reads(data, region_index, call, loaders if region_scope is scope else None, train_paths)
            key = (region_index.name, region_index.line(call))
            if reads and key not in hits:
                hits[key] = _after_clock_hit(index, loop, region_index, call, reads[0], reserve, saved_at, budget_known)


def _after_save(
    indexes: list[ModuleIndex],
    index: ModuleIndex,
    save: cst.Call,
    data: TrainingData,
    configuration: Configuration,
    hits: dict[tuple[str, int], Hit],
) -> None:
    scope = index.enclosing_function(save) or index.parsed.module
    if _last_save(index, _region_calls(index, scope, save), configuration, data) is not None:
        return  # written again later (raw checkpoint, then the quantized artifact): not the final one
    regions: list[Region] = [(index, scope, save)]
    if isinstance(scope, cst.FunctionDef):
        regions += _caller_regions(indexes, scope.name.value)
    for region_index, region_scope, boundary in regions:
        calls = _region_calls(region_index, region_scope, boundary)
        last = _last_save(region_index, calls, configuration, data)
        if last is not None:
            calls = calls[calls.index(last) + 1 :]
        for call in calls:
            key = (region_index.name, region_index.line(call))
            if key in hits:
                continue
            reads = direct_reads(region_index, call) or data.reads_of_call(call, index=region_index)
            if reads:
                hits[key] = _after_save_hit(index, save, region_index, call, reads[0])


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


def _evaluation_reads(index: ModuleIndex, data: TrainingData) -> list[tuple[cst.FunctionDef, Read]]:
    """Training reads inside an evaluation function, recognised by what it does: it scores
    (log-probabilities, cross-entropy) tokens of the validation data and trains nothing on
    training data (``train_and_eval`` trains first, so it is no evaluation function; an
    ``eval_*`` pre-filling an n-gram cache from training shards is one, issue 12)."""
    found: list[tuple[cst.FunctionDef, Read]] = []
    trainers: dict[int, bool] = {}
    for function in index.functions:
        reads = data.reads_in_function(index, function)  # memoized: the cheap question first
        if not reads or not _touches_validation(index, function):
            continue
        if not is_scoring_function(index, function, nodes_within(index.calls, function, index)):
            continue
        if _trains(index, function, data, trainers, 0) or _writes(index, function, data, 0):
            continue
        found += [(function, read) for read in reads]
    return found


_VAL_TEXT = re.compile(r"(?<![A-Za-z0-9])val(?:_|idation|\b)|_val\b", re.IGNORECASE)


def _touches_validation(index: ModuleIndex, function: cst.FunctionDef) -> bool:
    if not _VAL_TEXT.search(index.text_of(function)):
        return False  # a text prefilter before the walk
    for node in walk(function):
        word = (
            node.value if isinstance(node, cst.Name) else node.attr.value if isinstance(node, cst.Attribute) else None
        )
        if word is not None and _VAL_DATA.search(word):
            return True
    return False


def _trains(
    index: ModuleIndex, function: cst.FunctionDef, data: TrainingData, memo: dict[int, bool], depth: int
) -> bool:
    """Whether ``function`` (or a function it calls) trains on training batches: a loop whose
    body, callees included, reads training data and either calls ``backward``
    (``train_model``'s loop calling ``step_fn``) or stops on the wall clock (gradient-free
    evolution-strategy training). Test-time training backpropagates on validation chunks,
    so it is not training here."""
    key = id(function)
    if key in memo:
        return memo[key]
    memo[key] = False
    result = any(
        (_calls_backward(index, loop, data, 0) or _compares_clock(index, loop))
        and (
            direct_reads(index, loop)
            or any(data.reads_of_call(c, index=index) for c in nodes_within(index.calls, loop, index))
        )
        for loop in nodes_within(index.loops, function, index)
    )
    if not result and depth < 3:
        result = any(
            callee is not function and _trains(callee_index, callee, data, memo, depth + 1)
            for call in nodes_within(index.calls, function, index)
            for callee_index, callee in data.callees(call)
        )
    memo[key] = result
    return result


def _writes(index: ModuleIndex, function: cst.FunctionDef, data: TrainingData, depth: int) -> bool:
    """Whether ``function`` (or a helper it calls) serializes something: a function that reads
    training data and writes state is building the artifact (a classical n-gram model warmed
    on training shards and saved, #902), not scoring with unpaid training data."""
    key = ("pg302_writes", id(function))
    known = index.memo.get(key)
    if known is not None:
        return known
    index.memo[key] = False  # recursion guard
    calls = nodes_within(index.calls, function, index)
    result = (
        any(call_tail(c) in _SERIALIZE for c in calls)
        or depth < 2
        and any(
            callee is not function and _writes(callee_index, callee, data, depth + 1)
            for call in calls
            for callee_index, callee in data.callees(call)
        )
    )
    if result or depth == 0:
        index.memo[key] = result  # a negative answer below the top is depth-limited: not kept
    else:
        del index.memo[key]
    return result


def _calls_backward(index: ModuleIndex, scope: cst.CSTNode, data: TrainingData, depth: int) -> bool:
    calls = nodes_within(index.calls, scope, index)
    if any(call_tail(c) == "backward" for c in calls) or _calls_gradient_transform(index, scope, calls):
        return True
    return depth < 2 and any(
        callee is not scope and _calls_backward(callee_index, callee, data, depth + 1)
        for call in calls
        for callee_index, callee in data.callees(call)
    )


_GRADIENT_TRANSFORMS = frozenset({"value_and_grad", "grad"})


def _calls_gradient_transform(index: ModuleIndex, scope: cst.CSTNode, calls: list[cst.Call]) -> bool:
    """MLX and JAX train without ``backward()``: the loss is wrapped once by a gradient
    transform (``loss_and_grad = mx.compile(nn.value_and_grad(model, model.loss))``) and the
    wrapper is called on each batch. Without this an all-in-one ``main`` that trains that
    way and then scores the validation set looked like an evaluation function reading
    training data (#342)."""
    if any(call_tail(c) in _GRADIENT_TRANSFORMS for c in calls):
        return True
    called = {c.func.value for c in calls if isinstance(c.func, cst.Name)}
    if not called:
        return False
    owner = scope if isinstance(scope, cst.FunctionDef) else index.enclosing_function(scope)
    region = owner if owner is not None else index.parsed.module
    for statement in nodes_within(index.assigns, region, index):
        value = assigned_value(statement)
        if value is None or not called.intersection(target_names(statement)):
            continue
        if any(isinstance(n, cst.Call) and call_tail(n) in _GRADIENT_TRANSFORMS for n in walk(value)):
            return True
    return False


def _after_save_hit(index: ModuleIndex, save: cst.Call, region_index: ModuleIndex, call: cst.Call, read: Read) -> Hit:
    return _late_read_hit(
        step(index, save, "final model serialized: training is over"),
        step(region_index, call, "called after serialization"),
        region_index,
        call,
        read,
        f"after the final model is serialized (line {index.line(save)})",
    )


def _late_read_hit(
    boundary: Step,
    call_step: Step,
    region_index: ModuleIndex,
    call: cst.Call,
    read: Read,
    when: str,
    situation: str | None = None,
) -> Hit:
    """A PG302 hit: the boundary (save or clock), the late call, and the read it leads to."""
    path = [boundary, call_step]
    if read.node is not call:
        path.append(step(read.index, read.node, f"reads training data: {read.what}"))
    path += read.via
    return Hit(
        rule="PG302",
        when=situation,
        index=region_index,
        node=region_index.enclosing_statement(call),
        message=f"training data is read (`{read.what}`) {when}",
        path=tuple(path),
    )


def _after_clock_hit(
    index: ModuleIndex,
    loop: cst.CSTNode,
    region_index: ModuleIndex,
    call: cst.Call,
    read: Read,
    reserve: str | None,
    saved_at: int | None,
    budget_known: bool,
) -> Hit:
    situation = None
    if reserve is not None:
        shown = reserve if reserve.startswith("`") else f"`{reserve}`"  # a budget below 600 s comes described
        why = f"after the final model is serialized (line {saved_at}), outside the reserved slice {shown}"
    elif budget_known:
        why = (
            f"after the wall-clock-capped training loop (line {index.line(loop)}) with no reserved slice of the "
            "training time for it"
        )
    else:
        situation = "budget-unknown"
        why = (
            f"after the wall-clock-capped training loop (line {index.line(loop)}) whose time budget cannot be read "
            "statically: legal only if the loop stops early enough to leave this inside the 600 s (#593)"
        )
    return _late_read_hit(
        step(index, loop, "training loop stops on the wall clock"),
        step(region_index, call, "called after the training clock"),
        region_index,
        call,
        read,
        why,
        situation,
    )
