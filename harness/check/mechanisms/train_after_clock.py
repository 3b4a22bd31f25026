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

from collections.abc import Iterator

import libcst as cst

from harness.check.switches import UNKNOWN
from harness.check.switches.reach import Configuration
from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, dotted_name, number_value, strings_in, target_names
from harness.check.words import Vocabulary, any_word
from harness.findings import Step

from .hit import Hit, step
from .targets import is_scoring_function
from .train_reads import TRAIN_WORDS, Read, TrainingData, direct_reads, loader_reuse, loop_loaders, train_path_use

# Names of the wall-clock budget the loop stops on; the clock check may also compare a
# measurement (``training_time_ms``, ``elapsed``), which is no budget.
_BUDGET_WORDS = ("wallclock", "max_time", "time_(limit|budget)", "max_train_sec*")
_WALLCLOCK = any_word(*_BUDGET_WORDS, "stop_after", "deadline", "train(ing)?_time", "elapsed*")
_BUDGET = any_word(*_BUDGET_WORDS, "train_budget", "max_train_(time|min*)")
_RESERVE = any_word("reserve")  # not torch.cuda.memory_reserved, nor preserve_*
_MILLISECONDS = any_word("ms", "millis*")
_MINUTES = any_word("min", "minutes?")
# Validation data as the code holds it: ``val_tokens``, ``h.val_files``, ``x_val`` (not ``eval``,
# ``interval`` nor a ``valid`` mask).
_VAL_DATA = any_word("val", "validation*")
_FINAL_ARTIFACT = any_word("final*", "quant*", "int[45678]", "ptz", "artifact*", "compress*")
TRAIN_BUDGET_SECONDS = 600.0  # R-TIME-TRAIN: "under 10 minutes on 8xH100s"
_SERIALIZE = {"save", "save_file", "write_bytes", "compress"}
_CLOCK_CALLS = {"time", "perf_counter", "monotonic", "perf_counter_ns", "time_ns"}
_GRADIENT_TRANSFORMS = frozenset({"value_and_grad", "grad"})

Region = tuple[ModuleIndex, cst.CSTNode, cst.CSTNode]  # (index, scope, boundary node in scope)


def _any_name(node: cst.CSTNode, vocabulary: Vocabulary) -> bool:
    """Some name in ``node`` (an attribute's member name included) is in ``vocabulary``."""
    return any(type(n) is cst.Name and vocabulary.search(n.value) for n in walk(node))


def _references(index: ModuleIndex, node: cst.CSTNode) -> Iterator[tuple[cst.BaseExpression, str]]:
    """The names and attribute chains in ``node`` with their last word (``args.max_wallclock_seconds``
    → ``max_wallclock_seconds``); a member name only as part of its chain."""
    for n in walk(node):
        if isinstance(n, cst.Attribute):
            yield n, n.attr.value
        elif isinstance(n, cst.Name):
            parent = index.parent(n)
            if not (isinstance(parent, cst.Attribute) and parent.attr is n):
                yield n, n.value


def _reads_clock(expr: cst.CSTNode) -> bool:
    return any(isinstance(n, cst.Call) and call_tail(n) in _CLOCK_CALLS for n in walk(expr))


def _compares_clock(index: ModuleIndex, loop: cst.CSTNode) -> bool:
    """A comparison against the clock inside the loop: ``elapsed_ms >= max_wallclock_ms``,
    ``time.perf_counter() - t0 >= budget``. Logging the time is not a stop condition."""
    return any(_reads_clock(c) or _any_name(c, _WALLCLOCK) for c in nodes_within(index.comparisons, loop, index))


def _training_loops(index: ModuleIndex) -> list[cst.CSTNode]:
    """The outermost loops that update the model (backward + step) and stop on the wall clock."""
    loops = []
    for loop in index.loops:
        tails = {call_tail(c) for c in nodes_within(index.calls, loop, index)}
        if {"backward", "step"} <= tails and _compares_clock(index, loop):
            loops.append(loop)
    return [l for l in loops if not any(o is not l and nodes_within([l], o, index) for o in loops)]


def _env_keys(configuration: Configuration, vocabulary: Vocabulary) -> set[str]:
    """Settings bound to a string in ``vocabulary`` (an env name, a shard path): minified code binds
    ``GPTQ_RESERVE_SECONDS`` or ``fineweb_train_*.bin`` to a one-letter field, so the string decides."""
    return {
        key
        for key, bindings in configuration.bindings.items()
        if any(vocabulary.search(text) for b in bindings for text in strings_in(b.expr))
    }


def _reserve_state(index: ModuleIndex, scope: cst.CSTNode, configuration: Configuration) -> str | None:
    """A description of the reserved calibration slice, or None when there is none (or it is 0)."""
    keys = _env_keys(configuration, _RESERVE)
    for node, word in _references(index, scope):
        if _RESERVE.search(word) or word.lower() in keys:
            value = configuration.evaluate(node).value
            if value is UNKNOWN or (isinstance(value, (int, float)) and value > 0):
                return dotted_name(node) or index.code(node)
    return None


def _budget_state(
    index: ModuleIndex, loop: cst.CSTNode, scope: cst.CSTNode, configuration: Configuration
) -> tuple[str | None, bool]:
    """A description of a training budget set below 600 s (or None), and whether any budget
    of the loop could be read at all. ``MAX_WALLCLOCK_SECONDS=590`` on the README's run command
    is the reserve under another name (R-TIME-TRAIN; the legal counterpart of #593/#606 beside
    ``GPTQ_RESERVE_SECONDS`` in #1060/#1855). The budget is read where the loop's clock check
    reads it, through local names bound before the loop (``max_wallclock_ms = 1000.0 *
    args.max_wallclock_seconds``), under the documented settings. Every known budget must be
    below 600 s and above 0 (0 disables the cap); none known leaves the question open."""
    keys = _env_keys(configuration, _BUDGET)
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    locals_: dict[str, list[cst.BaseExpression]] = {}
    for statement in nodes_within(index.assigns, scope, index):
        value = assigned_value(statement)
        if value is not None and index.enclosing_function(statement) is owner:
            for name in target_names(statement):
                locals_.setdefault(name, []).append(value)
    # ``approx_ms >= train_budget_ms`` beside a ``stop_after_step`` flag: the budget is here
    pending: list[cst.CSTNode] = [
        c for c in nodes_within(index.comparisons, loop, index) if _compares_clock(index, c) or _any_name(c, _BUDGET)
    ]
    budgets = _literal_budgets(pending)
    seen: set[int] = set()
    for _ in range(3):  # the comparison, then up to two local hops
        following: list[cst.CSTNode] = []
        for node, word in (reference for expr in pending for reference in _references(index, expr)):
            if id(node) in seen or _RESERVE.search(word):
                continue
            seen.add(id(node))
            is_budget = _BUDGET.search(word) or word.lower() in keys
            amount = configuration.evaluate(node).value if is_budget else UNKNOWN
            if is_budget and amount is UNKNOWN and isinstance(node, cst.Name) and owner is not None:
                amount = _parameter_default(owner, node.value, configuration)
            if isinstance(amount, (int, float)) and not isinstance(amount, bool):
                budgets.append((node, _in_seconds(word, amount, configuration)))
            elif isinstance(node, cst.Name):
                following += locals_.get(node.value, [])
        pending = following
    if budgets and all(0 < seconds < TRAIN_BUDGET_SECONDS for _, seconds in budgets):
        budget, seconds = budgets[0]
        used = configuration.evaluate(budget).used
        documented = [f"{name}={value} in {s.file}:{s.line}" for name, value, s in used if s is not None]
        where = f" ({', '.join(documented)})" if documented else ""
        return f"`{dotted_name(budget) or index.code(budget)}` = {seconds:g} s of the 600 s{where}", True
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
    owner = scope if isinstance(scope, cst.FunctionDef) else None
    excluded = _exclusive_spans(index, boundary, scope)
    calls = []
    for call in nodes_within(index.calls, scope, index):
        start = (offsets(call) or (-1, -1))[0]
        if start > where[1] and index.enclosing_function(call) is owner:
            if not any(low <= start <= high for low, high in excluded):
                calls.append(call)
    return calls


def _last_save(
    index: ModuleIndex, calls: list[cst.Call], configuration: Configuration, data: TrainingData
) -> cst.Call | None:
    """The last serialization among ``calls``, a helper that writes (``export_artifact(...)``)
    included: a raw ``final_model.pt`` written before GPTQ calibration is not the artifact, the
    quantized write after it is (#1060); a write switched off by the documented configuration
    (``SAVE_POST_TRAIN_CHECKPOINT`` left at 0, #843) marks nothing."""
    saves = [
        c
        for c in calls
        if (call_tail(c) in _SERIALIZE or any(_writes(i, f, data, 1) for i, f in data.callees(c)))
        and _runs(index, c, configuration)
    ]
    return saves[-1] if saves else None


def _runs(index: ModuleIndex, node: cst.CSTNode, configuration: Configuration) -> bool:
    return configuration.node_state(index, node)[0] is not False


def _regions(indexes: list[ModuleIndex], index: ModuleIndex, boundary: cst.CSTNode) -> tuple[cst.CSTNode, list[Region]]:
    """The scope of ``boundary``, and the regions that run after it: the rest of that scope,
    then each caller after its call (the loop usually sits in ``train_model`` and calibration
    in its caller)."""
    scope = index.enclosing_function(boundary) or index.parsed.module
    regions: list[Region] = [(index, scope, boundary)]
    if isinstance(scope, cst.FunctionDef):
        for caller in indexes:
            for call in caller.calls:
                if call_tail(call) == scope.name.value:
                    regions.append((caller, caller.enclosing_function(call) or caller.parsed.module, call))
    return scope, regions


def find_train_reads(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    train_paths = _env_keys(configuration, TRAIN_WORDS)
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
                name = function.name.value
                evaluation = step(index, function, f"evaluation function {name} (scores validation tokens)")
                path = (evaluation, step(read.index, read.node, "training shard read during evaluation"), *read.via)
                message = f"evaluation function `{name}` reads training data (`{read.what}`)"
                hits[key] = Hit("PG302", read.index, read.index.enclosing_statement(read.node), message, path)
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
    """Training reads after one wall-clock-capped loop, in its function and in its callers."""
    scope, regions = _regions(indexes, index, loop)
    reserve = _reserve_state(index, scope, configuration)
    budget_known = True
    if reserve is None:
        reserve, budget_known = _budget_state(index, loop, scope, configuration)
    clock = step(index, loop, "training loop stops on the wall clock")
    loaders = loop_loaders(index, loop)
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
            key = (region_index.name, region_index.line(call))
            if key in hits or (reserve is not None and (saved_at is None or key[1] <= saved_at)):
                continue
            reads = direct_reads(region_index, call) or data.reads_of_call(call, index=region_index)
            if not reads and region_scope is scope:
                reads = loader_reuse(index, call, loaders, data) or train_path_use(index, call, train_paths)
            if reads:
                why, situation = _why_late(index.line(loop), reserve, saved_at, budget_known)
                hits[key] = _late_hit(clock, "after the training clock", region_index, call, reads[0], why, situation)


def _why_late(loop_line: int, reserve: str | None, saved_at: int | None, budget_known: bool) -> tuple[str, str | None]:
    """Why a read after the training clock is late, and the situation its severity is lowered for."""
    if reserve is not None:
        shown = reserve if reserve.startswith("`") else f"`{reserve}`"  # a budget below 600 s comes described
        return f"after the final model is serialized (line {saved_at}), outside the reserved slice {shown}", None
    after = f"after the wall-clock-capped training loop (line {loop_line})"
    if budget_known:
        return f"{after} with no reserved slice of the training time for it", None
    return (
        f"{after} whose time budget cannot be read statically: legal only if the loop stops early enough to leave "
        "this inside the 600 s (#593)",
        "budget-unknown",
    )


def _late_hit(
    boundary: Step, after: str, index: ModuleIndex, call: cst.Call, read: Read, when: str, situation: str | None = None
) -> Hit:
    """A PG302 hit: the boundary (save or clock), the late call, and the read it leads to."""
    path = [boundary, step(index, call, f"called {after}")]
    if read.node is not call:
        path.append(step(read.index, read.node, f"reads training data: {read.what}"))
    message = f"training data is read (`{read.what}`) {when}"
    return Hit("PG302", index, index.enclosing_statement(call), message, (*path, *read.via), when=situation)


def _after_save(
    indexes: list[ModuleIndex],
    index: ModuleIndex,
    save: cst.Call,
    data: TrainingData,
    configuration: Configuration,
    hits: dict[tuple[str, int], Hit],
) -> None:
    serialized = step(index, save, "final model serialized: training is over")
    for region_index, region_scope, boundary in _regions(indexes, index, save)[1]:
        calls = _region_calls(region_index, region_scope, boundary)
        last = _last_save(region_index, calls, configuration, data)
        if last is not None:
            if boundary is save:
                return  # written again later (raw checkpoint, then the quantized artifact): not the final one
            calls = calls[calls.index(last) + 1 :]
        for call in calls:
            key = (region_index.name, region_index.line(call))
            if key in hits:
                continue
            reads = direct_reads(region_index, call) or data.reads_of_call(call, index=region_index)
            if reads:
                when = f"after the final model is serialized (line {index.line(save)})"
                hits[key] = _late_hit(serialized, "after serialization", region_index, call, reads[0], when)


def _final_saves(index: ModuleIndex) -> list[cst.Call]:
    """``torch.save(..., "final_model.int6.ptz")`` outside any loop: the train→eval boundary
    (periodic checkpoints inside the training loop are not)."""
    return [
        call
        for call in index.calls
        if call_tail(call) in {"save", "save_file"}
        and not any(isinstance(a, (cst.For, cst.While)) for a in index.ancestors(call))
        and _FINAL_ARTIFACT.search(index.code(call, 400))
    ]


def _evaluation_reads(index: ModuleIndex, data: TrainingData) -> list[tuple[cst.FunctionDef, Read]]:
    """Training reads inside an evaluation function, recognised by what it does: it scores
    (log-probabilities, cross-entropy) tokens of the validation data and trains nothing on
    training data (``train_and_eval`` trains first, so it is no evaluation function; an
    ``eval_*`` pre-filling an n-gram cache from training shards is one, issue 12)."""
    found: list[tuple[cst.FunctionDef, Read]] = []
    trainers: dict[int, bool] = {}
    for function in index.functions:
        reads = data.reads_in_function(index, function)  # memoized: the cheap question first
        if not reads or not _any_name(function, _VAL_DATA):
            continue
        if not is_scoring_function(index, function, nodes_within(index.calls, function, index)):
            continue
        if _trains(index, function, data, trainers, 0) or _writes(index, function, data, 0):
            continue
        found += [(function, read) for read in reads]
    return found


def _callees(
    function: cst.CSTNode, calls: list[cst.Call], data: TrainingData
) -> Iterator[tuple[ModuleIndex, cst.FunctionDef]]:
    """The submission functions ``calls`` may run, but ``function`` itself (recursion)."""
    return ((i, callee) for call in calls for i, callee in data.callees(call) if callee is not function)


def _trains(
    index: ModuleIndex, function: cst.FunctionDef, data: TrainingData, memo: dict[int, bool], depth: int
) -> bool:
    """Whether ``function`` (or a function it calls) has a loop that reads training data and
    calls ``backward`` (callees included) or stops on the wall clock (gradient-free evolution
    strategies). Test-time training backpropagates on validation chunks: not training here."""
    key = id(function)
    if key in memo:
        return memo[key]
    memo[key] = False
    calls = nodes_within(index.calls, function, index)
    result = any(
        (_calls_backward(index, loop, data, 0) or _compares_clock(index, loop))
        and (
            direct_reads(index, loop)
            or any(data.reads_of_call(c, index=index) for c in nodes_within(index.calls, loop, index))
        )
        for loop in nodes_within(index.loops, function, index)
    ) or (depth < 3 and any(_trains(i, f, data, memo, depth + 1) for i, f in _callees(function, calls, data)))
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
    result = any(call_tail(c) in _SERIALIZE for c in calls) or (
        depth < 2 and any(_writes(i, f, data, depth + 1) for i, f in _callees(function, calls, data))
    )
    del index.memo[key]
    if result or depth == 0:
        index.memo[key] = result  # a negative answer below the top is depth-limited: not kept
    return result


def _calls_backward(index: ModuleIndex, scope: cst.CSTNode, data: TrainingData, depth: int) -> bool:
    calls = nodes_within(index.calls, scope, index)
    if any(call_tail(c) == "backward" for c in calls) or _calls_gradient_transform(index, scope, calls):
        return True
    return depth < 2 and any(_calls_backward(i, f, data, depth + 1) for i, f in _callees(scope, calls, data))


def _calls_gradient_transform(index: ModuleIndex, scope: cst.CSTNode, calls: list[cst.Call]) -> bool:
    """MLX and JAX train without ``backward()``: a gradient transform wraps the loss once
    (``loss_and_grad = nn.value_and_grad(model, model.loss)``) and the wrapper runs on each batch;
    an all-in-one ``main`` training so looked like an evaluation function (#342)."""
    if any(call_tail(c) in _GRADIENT_TRANSFORMS for c in calls):
        return True
    called = {c.func.value for c in calls if isinstance(c.func, cst.Name)}
    if not called:
        return False
    owner = scope if isinstance(scope, cst.FunctionDef) else index.enclosing_function(scope)
    for statement in nodes_within(index.assigns, owner or index.parsed.module, index):
        value = assigned_value(statement)
        if value is not None and called.intersection(target_names(statement)):
            if any(isinstance(n, cst.Call) and call_tail(n) in _GRADIENT_TRANSFORMS for n in walk(value)):
                return True
    return False
