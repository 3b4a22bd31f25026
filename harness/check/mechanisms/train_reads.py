"""PG302, first half: what counts as *reading training data*, whatever the code is called.

Why a module of its own: the timing half (``train_after_clock``) only asks "does this call
read training shards?", and the answer must come from what the code does — a batch drawn
from a loader built on the training files, a shard opened — not from a helper's parameter
name (#728 handed a validation loader to a ``collect_hessians(model, train_loader, …)``
helper) nor from a file glob that is only counted for a log line (every accepted record
since #1493 prints ``len(glob('fineweb_train_*.bin'))`` before training).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from harness.check.switches.reach import Configuration
from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, last_identifier, strings_in, target_names
from harness.findings import Step

from .hit import step
from .targets import value_names

_READ_CALLS = {"next_batch", "next_tokens"}
LOADER_CLASS = re.compile(r"(Token|Shard|Distributed\w*|Train\w*)(Stream|Loader)$")
_FILE_CALLS = {"load_data_shard", "glob", "fromfile", "memmap", "load_shard", "iglob"}
_LISTING_CALLS = {"glob", "iglob"}  # list file names: a read only once the names are opened
TRAIN_WORDS = re.compile(
    r"fineweb_train|train_files|train_pattern|train_glob|train_shards|train_bin|train_path", re.IGNORECASE
)
VAL_WORDS = re.compile(r"val", re.IGNORECASE)
LOGGING = {"print", "log", "log0", "info", "debug", "warning", "write"}
_COUNTING = {"len", "sum", "any", "bool"}


@dataclass(frozen=True)
class Read:
    index: ModuleIndex
    node: cst.CSTNode
    what: str
    via: tuple[Step, ...] = ()  # where a training-shard pattern handed to a helper is opened


def mentions(expr: cst.CSTNode, pattern: re.Pattern[str]) -> bool:
    words = [n.value for n in value_names(expr)] + [n.attr.value for n in walk(expr) if isinstance(n, cst.Attribute)]
    return any(pattern.search(w) for w in words) or any(pattern.search(s) for s in strings_in(expr))


def _only_listed(index: ModuleIndex, call: cst.Call) -> bool:
    """``log(f"train_shards: {len(list(Path(d).glob('fineweb_train_*.bin')))}")``: the file
    names are counted or printed, no shard is opened (R-TIME-TRAIN forbids reading the data,
    not knowing how many files there are)."""
    for ancestor in index.ancestors(call):
        if isinstance(ancestor, (cst.FormattedString, cst.SimpleStatementLine, cst.IndentedBlock)):
            return isinstance(ancestor, cst.FormattedString)
        if isinstance(ancestor, cst.Call) and call_tail(ancestor) in _COUNTING | LOGGING:
            return True
    return False


def direct_reads(index: ModuleIndex, scope: cst.CSTNode) -> list[Read]:
    reads: list[Read] = []
    for call in nodes_within(index.calls, scope, index):
        tail = call_tail(call)
        if tail in _READ_CALLS and isinstance(call.func, cst.Attribute):
            if not mentions(call.func.value, VAL_WORDS):
                reads.append(Read(index, call, index.code(call, 60)))
        elif LOADER_CLASS.search(tail):
            if mentions(call, TRAIN_WORDS) or not mentions(call, VAL_WORDS):
                reads.append(Read(index, call, index.code(call, 60)))
        elif tail in _FILE_CALLS and mentions(call, TRAIN_WORDS):
            if not (tail in _LISTING_CALLS and _only_listed(index, call)):
                reads.append(Read(index, call, index.code(call, 60)))
    return reads


def _is_validation_source(index: ModuleIndex, expr: cst.CSTNode, caller: cst.FunctionDef | None) -> bool:
    """``DistributedTokenLoader(args.val_files, …)`` or a local name bound only to one."""

    def val_only(node: cst.CSTNode) -> bool:
        return mentions(node, VAL_WORDS) and not mentions(node, TRAIN_WORDS)

    if val_only(expr):
        return True
    if not isinstance(expr, cst.Name) or caller is None:
        return False
    bound = [
        value
        for statement in nodes_within(index.assigns, caller, index)
        if expr.value in target_names(statement) and (value := assigned_value(statement)) is not None
    ]
    return bool(bound) and all(val_only(value) for value in bound)


def _call_parameters(call: cst.Call, function: cst.FunctionDef) -> list[str]:
    """The positional parameters ``call``'s arguments fill: ``self`` is bound by the receiver
    of a method call or by a constructor call."""
    params = [p.name.value for p in function.params.params]
    if function.name.value == "__init__" and not isinstance(call.func, cst.Attribute):
        return params[1:]  # a constructor: the first parameter is the instance, whatever its name
    if params and params[0] in {"self", "cls"} and isinstance(call.func, cst.Attribute):
        params = params[1:]
    return params


def _argument_for(call: cst.Call, function: cst.FunctionDef, param: str) -> cst.BaseExpression | None:
    """The expression ``call`` passes for ``function``'s parameter ``param``."""
    params = _call_parameters(call, function)
    position = 0
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is None:
            if position < len(params) and params[position] == param:
                return arg.value
            position += 1
        elif arg.keyword.value == param:
            return arg.value
    return None


class TrainingData:
    """Which submission functions read training data, directly or through their callees."""

    def __init__(self, indexes: list[ModuleIndex], train_keys: set[str] | None = None) -> None:
        self.functions: dict[str, list[tuple[ModuleIndex, cst.FunctionDef]]] = {}
        for index in indexes:
            for function in index.functions:
                self.functions.setdefault(function.name.value, []).append((index, function))
                owner = index.parent(index.parent(function) or function)
                if function.name.value == "__init__" and isinstance(owner, cst.ClassDef):
                    # ``ShuffledLoader(h.train_files)`` runs ``__init__``: the constructor is a
                    # call into it, whatever the class is called
                    self.functions.setdefault(owner.name.value, []).append((index, function))
        self.train_keys = train_keys or set()
        self._memo: dict[int, list[Read]] = {}

    def callees(self, call: cst.Call) -> list[tuple[ModuleIndex, cst.FunctionDef]]:
        """Submission functions a call may run, by name; ``super().__init__()`` names no class
        (every ``__init__`` would match), so dunder names resolve to nothing."""
        tail = call_tail(call)
        return [] if tail.startswith("__") else self.functions.get(tail, [])

    def reads_of_call(self, call: cst.Call, depth: int = 0, index: ModuleIndex | None = None) -> list[Read]:
        if depth > 4:
            return []
        found: list[Read] = []
        for callee_index, function in self.callees(call):
            reads = self.reads_in_function(callee_index, function, depth)
            if index is not None:
                reads = [r for r in reads if not self._fed_validation(index, call, function, r)]
            found += reads
            if not found and index is not None:
                found += self._reads_through_arguments(index, call, callee_index, function, depth)
        return found

    @staticmethod
    def _fed_validation(index: ModuleIndex, call: cst.Call, function: cst.FunctionDef, read: Read) -> bool:
        """``hessians(model, val_loader, n)`` into ``def hessians(model, train_loader, n)``: the
        batches come from whatever the caller passes, so a validation loader read through a
        parameter named ``train_loader`` is no training read (#728: that is PG106's business).
        Likewise ``DistributedTokenLoader(args.val_files, …)`` runs an ``__init__`` whose
        ``TokenStream(pattern)`` opens the validation files it was given."""
        node = read.node
        if not isinstance(node, cst.Call) or read.index.enclosing_function(node) is not function:
            return False
        # a method call draws from its receiver; a constructor/function opens what it is given
        used = [node.func.value] if isinstance(node.func, cst.Attribute) else [a.value for a in node.args]
        params = {p.name.value for p in function.params.params}
        names = [e.value for e in used if isinstance(e, cst.Name) and e.value in params]
        caller = index.enclosing_function(call)
        arguments = [_argument_for(call, function, name) for name in names]
        return any(a is not None and _is_validation_source(index, a, caller) for a in arguments)

    def _is_train_path(self, expr: cst.CSTNode) -> bool:
        """``args.train_files``, ``"fineweb_train_*.bin"``, or a minified field bound to one."""
        if mentions(expr, TRAIN_WORDS):
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


_OPEN_CALLS = _FILE_CALLS | {"open", "load"}
# methods of a path object built on the parameter: ``Path(pattern).glob("*")`` lists or opens it,
# while ``Path(raw)`` alone (resolving a command-line path, #902) opens nothing
_PATH_METHODS = {"glob", "rglob", "iglob", "open", "read_bytes", "read_text", "iterdir"}


def _bound_parameters(call: cst.Call, function: cst.FunctionDef, wanted: Callable[[cst.CSTNode], bool]) -> set[str]:
    """Parameters of ``function`` that receive an argument of ``call`` satisfying ``wanted``."""
    params = _call_parameters(call, function)
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
        tail = call_tail(call)
        if (
            isinstance(call.func, cst.Attribute)
            and tail in _PATH_METHODS
            and any(n.value in live for n in value_names(call.func.value))
            and not (tail in _LISTING_CALLS and _only_listed(index, call))
        ):
            return call, ()
        passes = [a for a in call.args if any(n.value in live for n in value_names(a.value))]
        if not passes:
            continue
        if tail in _OPEN_CALLS or LOADER_CLASS.search(tail):
            if tail in _LISTING_CALLS and _only_listed(index, call):
                continue
            return call, ()
        for callee_index, callee in data.callees(call):
            if callee is function:
                continue
            inner = _bound_parameters(call, callee, lambda e: any(n.value in live for n in value_names(e)))
            opened = _opens_parameters(callee_index, callee, inner, data, depth + 1)
            if opened is not None:
                return opened[0], (step(index, call, f"passed on to {tail}"),) + opened[1]
    return None


def train_path_keys(configuration: Configuration) -> set[str]:
    """Config fields bound to a training-shard path (``tf = os.path.join(..., "fineweb_train_*.bin")``),
    whatever minification named them."""
    return {
        key
        for key, bindings in configuration.bindings.items()
        if any(TRAIN_WORDS.search(text) for b in bindings for text in strings_in(b.expr))
    }


def train_path_use(index: ModuleIndex, call: cst.Call, keys: set[str]) -> list[Read]:
    """``TL(a.tf)`` after the clock: the training-shard pattern handed to a loader (#593)."""
    if not keys or call_tail(call) in LOGGING | _COUNTING:
        return []
    for arg in call.args:
        node = arg.value
        word = (
            node.attr.value if isinstance(node, cst.Attribute) else node.value if isinstance(node, cst.Name) else None
        )
        if word is not None and word.lower() in keys:
            return [Read(index, call, index.code(call, 60))]
    return []


_MODEL_OUTPUT = re.compile(r"loss|logit|out|aux|hidden|grad", re.IGNORECASE)
_MODEL_METHODS = {
    "backward",
    "step",
    "zero_grad",
    "parameters",
    "named_parameters",
    "state_dict",
    "train",
    "eval",
    "forward",
}


def loop_loaders(index: ModuleIndex, loop: cst.CSTNode) -> dict[str, set[str]]:
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
        if (
            isinstance(value, cst.Call)
            and isinstance(value.func, cst.Attribute)
            and isinstance(value.func.value, cst.Name)
        ):
            name = value.func.value.value
            if not VAL_WORDS.search(name):
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


def loader_reuse(index: ModuleIndex, call: cst.Call, loaders: dict[str, set[str]], data: TrainingData) -> list[Read]:
    """``hs(m, tl, n)`` or ``tl.nb(n)`` after the loop: the training loader used again
    (``tl.close()`` is not a read, so only the batch-drawing methods count; nor is
    ``isinstance(tl, …)``/``hasattr(tl, …)``: the loader must go to a submission function)."""
    if not loaders:
        return []
    if isinstance(call.func, cst.Name) and call.func.value not in data.functions:
        return []
    receiver = call.func.value if isinstance(call.func, cst.Attribute) else None
    if (
        isinstance(receiver, cst.Name)
        and isinstance(call.func, cst.Attribute)
        and call.func.attr.value in loaders.get(receiver.value, set())
    ):
        return [Read(index, call, index.code(call, 60))]
    for arg in call.args:
        if isinstance(arg.value, cst.Name) and arg.value.value in loaders:
            return [Read(index, call, index.code(call, 60))]
    return []
