"""PG302, first half: what counts as *reading training data*, whatever the code is called.

The timing half (``train_after_clock``) only asks "does this call read training shards?", and
the answer comes from what the code does (a batch drawn from a loader built on the training
files, a shard opened), not from a helper's parameter name (#728 handed a validation loader to
``collect_hessians(model, train_loader, …)``) nor from a glob only counted for a log line (every
accepted record since #1493 prints ``len(glob('fineweb_train_*.bin'))`` before training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, last_identifier, strings_in, target_names
from harness.check.words import Vocabulary, any_word
from harness.findings import Step

from .callees import call_arguments
from .hit import step
from .targets import identifiers, value_names

_READ_CALLS = {"next_batch", "next_tokens"}
LOADER_CLASS = re.compile(r"(Token|Shard|Distributed\w*|Train\w*)(Stream|Loader)$")
_FILE_CALLS = {"load_data_shard", "glob", "fromfile", "memmap", "load_shard", "iglob"}
_LISTING_CALLS = {"glob", "iglob"}  # list file names: a read only once the names are opened
TRAIN_WORDS = any_word(
    "fineweb_train", "train_files", "train_patterns?", "train_glob", "train_shards", "train_bin", "train_paths?"
)
VAL_WORDS = any_word("val*", "*eval*")  # ``val_loader``, ``validation``, ``eval_stream``, ``dyneval``
LOGGING = {"print", "log", "log0", "info", "debug", "warning", "write"}
_COUNTING = {"len", "sum", "any", "bool"}
_OPEN_CALLS = _FILE_CALLS | {"open", "load"}
# methods of a path object built on the parameter: ``Path(pattern).glob("*")`` lists or opens it,
# while ``Path(raw)`` alone (resolving a command-line path, #902) opens nothing
_PATH_METHODS = {"glob", "rglob", "iglob", "open", "read_bytes", "read_text", "iterdir"}
# what a training loop unpacks from the model, not from a batch source
_MODEL_OUTPUT = any_word("*loss*", "*logits?", "logit*", "out*", "*out", "aux*", "hidden*", "grad*", "*grads?")
_MODEL_METHODS = {"parameters", "named_parameters", "state_dict", "train", "eval", "forward"}
_MODEL_METHODS |= {"backward", "step", "zero_grad"}  # called on a loss or an optimizer


@dataclass(frozen=True)
class Read:
    index: ModuleIndex
    node: cst.CSTNode
    what: str
    via: tuple[Step, ...] = ()  # where a training-shard pattern handed to a helper is opened


def mentions(expr: cst.CSTNode, vocabulary: Vocabulary) -> bool:
    return any(vocabulary.search(word) for word in identifiers(expr) + strings_in(expr))


def _only_listed(index: ModuleIndex, call: cst.Call) -> bool:
    """``log(f"train_shards: {len(list(Path(d).glob('fineweb_train_*.bin')))}")``: the file
    names are counted or printed, no shard is opened (R-TIME-TRAIN forbids reading the data,
    not knowing how many files there are)."""
    if call_tail(call) not in _LISTING_CALLS:
        return False
    for ancestor in index.ancestors(call):
        if isinstance(ancestor, (cst.FormattedString, cst.SimpleStatementLine, cst.IndentedBlock)):
            return isinstance(ancestor, cst.FormattedString)
        if isinstance(ancestor, cst.Call) and call_tail(ancestor) in _COUNTING | LOGGING:
            return True
    return False


def direct_reads(index: ModuleIndex, scope: cst.CSTNode) -> list[Read]:
    calls = nodes_within(index.calls, scope, index)
    return [Read(index, call, index.code(call, 60)) for call in calls if _reads(index, call)]


def _reads(index: ModuleIndex, call: cst.Call) -> bool:
    """A batch drawn from a non-validation loader, a training loader built, a training shard opened."""
    tail = call_tail(call)
    if tail in _READ_CALLS and isinstance(call.func, cst.Attribute):
        return not mentions(call.func.value, VAL_WORDS)
    if LOADER_CLASS.search(tail):
        return mentions(call, TRAIN_WORDS) or not mentions(call, VAL_WORDS)
    return tail in _FILE_CALLS and mentions(call, TRAIN_WORDS) and not _only_listed(index, call)


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


class TrainingData:
    """Which submission functions read training data, directly or through their callees."""

    def __init__(self, indexes: list[ModuleIndex], train_keys: set[str] | None = None) -> None:
        self.functions: dict[str, list[tuple[ModuleIndex, cst.FunctionDef]]] = {}
        for index in indexes:
            for function in index.functions:
                self.functions.setdefault(function.name.value, []).append((index, function))
                owner = index.parent(index.parent(function) or function)
                if function.name.value == "__init__" and isinstance(owner, cst.ClassDef):
                    # ``ShuffledLoader(h.train_files)`` runs ``__init__``, whatever the class is called
                    self.functions.setdefault(owner.name.value, []).append((index, function))
        self.train_keys = train_keys or set()
        self._memo: dict[int, list[Read]] = {}

    def callees(self, call: cst.Call) -> list[tuple[ModuleIndex, cst.FunctionDef]]:
        """Submission functions a call may run, by name; ``super().__init__()`` names no class
        (every ``__init__`` would match), so dunder names resolve to nothing."""
        tail = call_tail(call)
        return [] if tail.startswith("__") else self.functions.get(tail, [])

    def reads_of_call(self, call: cst.Call, index: ModuleIndex, depth: int = 0) -> list[Read]:
        if depth > 4:
            return []
        found: list[Read] = []
        for callee_index, function in self.callees(call):
            reads = self.reads_in_function(callee_index, function, depth)
            found += [r for r in reads if not self._fed_validation(index, call, function, r)]
            if not found:
                found += self._reads_through_arguments(index, call, callee_index, function, depth)
        return found

    @staticmethod
    def _fed_validation(index: ModuleIndex, call: cst.Call, function: cst.FunctionDef, read: Read) -> bool:
        """``hessians(model, val_loader, n)`` into ``def hessians(model, train_loader, n)`` reads
        what the caller passes, a validation loader: no training read (#728: PG106's business).
        Likewise ``DistributedTokenLoader(args.val_files, …)`` whose ``__init__`` opens its
        ``pattern`` opens the validation files."""
        node = read.node
        if not isinstance(node, cst.Call) or read.index.enclosing_function(node) is not function:
            return False
        # a method call draws from its receiver; a constructor/function opens what it is given
        used = [node.func.value] if isinstance(node.func, cst.Attribute) else [a.value for a in node.args]
        passed = call_arguments(call, function)
        caller = index.enclosing_function(call)
        names = [e.value for e in used if isinstance(e, cst.Name) and e.value in passed]
        return any(_is_validation_source(index, passed[name], caller) for name in names)

    def _reads_through_arguments(
        self, index: ModuleIndex, call: cst.Call, callee_index: ModuleIndex, function: cst.FunctionDef, depth: int
    ) -> list[Read]:
        """``prefill_counts(args.train_files, …)`` where the helper (or one it passes the parameter
        on to) globs/opens/loads it: training data read though the helper never names it (#593;
        the README FAQ forbids training data at eval time)."""
        # ``args.train_files``, ``"fineweb_train_*.bin"``, or a minified field bound to one
        passed = call_arguments(call, function).items()
        tainted = {param for param, expr in passed if mentions(expr, TRAIN_WORDS) or _names_key(expr, self.train_keys)}
        opened = _opens_parameters(callee_index, function, tainted, self, depth)
        if opened is None:
            return []
        opens = step(callee_index, opened[0], f"opens the training-shard pattern: {callee_index.code(opened[0], 60)}")
        return [Read(index, call, index.code(call, 60), opened[1] + (opens,))]

    def reads_in_function(self, index: ModuleIndex, function: cst.FunctionDef, depth: int = 0) -> list[Read]:
        if id(function) in self._memo:
            return self._memo[id(function)]
        self._memo[id(function)] = []  # a recursive call finds nothing more
        found = direct_reads(index, function)
        for call in nodes_within(index.calls, function, index):
            if not found:
                found += self.reads_of_call(call, index, depth + 1)
        self._memo[id(function)] = found
        return found


def _opens_parameters(
    index: ModuleIndex, function: cst.FunctionDef, params: set[str], data: TrainingData, depth: int
) -> tuple[cst.Call, tuple[Step, ...]] | None:
    """The first call in ``function`` that globs/opens/loads one of ``params`` (or hands it
    to a helper that does), with the steps of the helpers in between."""
    if not params or depth > 4:
        return None
    live = params - {n for s in nodes_within(index.assigns, function, index) for n in target_names(s)}

    def uses_live(expr: cst.CSTNode) -> bool:
        return any(n.value in live for n in value_names(expr))

    for call in nodes_within(index.calls, function, index):
        if index.enclosing_function(call) is not function or _only_listed(index, call):
            continue
        tail = call_tail(call)
        if isinstance(call.func, cst.Attribute) and tail in _PATH_METHODS and uses_live(call.func.value):
            return call, ()
        if not any(uses_live(a.value) for a in call.args):
            continue
        if tail in _OPEN_CALLS or LOADER_CLASS.search(tail):
            return call, ()
        for callee_index, callee in data.callees(call):
            if callee is function:
                continue
            inner = {param for param, expr in call_arguments(call, callee).items() if uses_live(expr)}
            opened = _opens_parameters(callee_index, callee, inner, data, depth + 1)
            if opened is not None:
                return opened[0], (step(index, call, f"passed on to {tail}"),) + opened[1]
    return None


def _names_key(expr: cst.CSTNode, keys: set[str]) -> bool:
    word = last_identifier(expr)
    return word is not None and word.lower() in keys


def train_path_use(index: ModuleIndex, call: cst.Call, keys: set[str]) -> list[Read]:
    """``TL(a.tf)`` after the clock: the training-shard pattern handed to a loader (#593)."""
    if keys and call_tail(call) not in LOGGING | _COUNTING and any(_names_key(a.value, keys) for a in call.args):
        return [Read(index, call, index.code(call, 60))]
    return []


def _method_call(node: cst.CSTNode) -> tuple[str, str] | None:
    """``tl.nb(n)`` → ``("tl", "nb")``."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and isinstance(node.func.value, cst.Name):
        return node.func.value.value, node.func.attr.value
    return None


def loop_loaders(index: ModuleIndex, loop: cst.CSTNode) -> dict[str, set[str]]:
    """Objects the training loop draws its batches from (``x, y = tl.nb(n)``), with the methods
    that drew them: whatever minified code calls them, that object *is* the training stream,
    so using it after the clock reads training data (#593, #606)."""
    loaders: dict[str, set[str]] = {}
    for statement in nodes_within(index.assigns, loop, index):
        targets = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else []
        if len(targets) != 1 or not isinstance(targets[0], cst.Tuple):
            continue
        if any(_MODEL_OUTPUT.search(n) for n in target_names(statement)):
            continue  # ``loss, aux = model.forward_aux(x, y)``: the model, not a batch source
        method = _method_call(statement.value)
        if method is not None and not VAL_WORDS.search(method[0]):
            loaders.setdefault(method[0], set()).add(method[1])
    scope = index.enclosing_function(loop) or index.parsed.module
    for call in nodes_within(index.calls, scope, index):
        method = _method_call(call)
        if isinstance(call.func, cst.Name):
            loaders.pop(call.func.value, None)  # called like a model: ``m(x, y)``
        elif method is not None and method[1] in _MODEL_METHODS:
            loaders.pop(method[0], None)
    return loaders


def loader_reuse(index: ModuleIndex, call: cst.Call, loaders: dict[str, set[str]], data: TrainingData) -> list[Read]:
    """``hs(m, tl, n)`` or ``tl.nb(n)`` after the loop: the training loader used again
    (``tl.close()`` is not a read, so only the batch-drawing methods count; nor is
    ``isinstance(tl, …)``/``hasattr(tl, …)``: the loader must go to a submission function)."""
    if not loaders or (isinstance(call.func, cst.Name) and call.func.value not in data.functions):
        return []
    method = _method_call(call)
    drawn = method is not None and method[1] in loaders.get(method[0], set())
    if drawn or any(isinstance(arg.value, cst.Name) and arg.value.value in loaders for arg in call.args):
        return [Read(index, call, index.code(call, 60))]
    return []
