"""The submission's own functions as the data-flow engine sees them, and how calls resolve.

Why: the decisive code is often one call away (``ttt_adapt(args, model, val_tokens)``) or in a
helper module beside ``train_gpt.py``; resolving calls by name (nothing is imported or executed)
lets the engine inline a callee's effects at the call site. Definitions and imports come from the
module index (``tree/index.py``); this adds which names each function's values come from.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import libcst as cst

from harness.check.flow import names as N
from harness.check.parse import ParsedSource
from harness.check.tree.children import children, walk
from harness.check.tree.index import ModuleIndex, index_submission
from harness.check.tree.nodes import dotted_name

# Method names too generic to resolve by uniqueness: they are torch/stdlib API far more
# often than the submission's own method of the same name.
_GENERIC_METHODS = frozenset(
    "forward step backward zero_grad parameters state_dict load_state_dict to cuda cpu float half bfloat16 item view"
    " reshape append extend update get items keys values __init__ __call__ train eval copy clone detach sum mean log"
    " write read close open save load format join split apply reset next_batch run".split()
)
_ids = itertools.count(1)


@dataclass(eq=False)
class FuncInfo:
    """One ``def`` of the submission. ``deps`` maps each local name to the names its values
    were computed from (flow-insensitive, all assignments) — used to tell chunk loops, whose
    data changes with the loop variable, from epoch loops, whose data does not."""

    name: str
    node: cst.FunctionDef | None  # None for a module's top-level code
    parsed: ParsedSource
    class_name: str | None = None
    parent: FuncInfo | None = None
    uid: int = field(default_factory=lambda: next(_ids))
    nested: dict[str, FuncInfo] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)
    flows_out: set[str] = field(default_factory=set)  # names reaching a return or a val log line
    free_names: set[str] = field(default_factory=set)  # outer-scope names a nested def reads
    has_matmul_accumulation: bool = False
    stores_activation_statistic: bool = False  # only meaningful for a function registered as a hook
    trains_params: bool = False  # builds an optimizer over (or writes) a parameter's parameters

    @property
    def display(self) -> str:
        return f"{self.class_name}.{self.name}" if self.class_name else self.name

    @property
    def file(self) -> str:
        return self.parsed.source.display_name

    @property
    def line(self) -> int:
        return self.parsed.line_of(self.node) if self.node is not None else 1

    def body(self) -> list[cst.CSTNode]:
        return list(self.parsed.module.body if self.node is None else self.node.body.body)

    def closure(self, names: set[str]) -> set[str]:
        """Every name that ``names`` were (transitively) computed from, roots included."""
        seen: set[str] = set()
        frontier = list(names)
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            root = N.root_part(name)
            if root not in seen:
                frontier.append(root)
            frontier.extend(self.deps.get(name, ()))
        return seen


_OWN_SCOPES = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda})  # exact types: cheaper than isinstance
_HANDLERS: dict[type, Callable[[_DepsCollector, cst.CSTNode], None] | None] = {}  # per node type


class _DepsCollector:
    """Collects assignments, returns and val-labelled log calls of one function body
    (nested defs, classes and lambdas excluded: they are analysed on their own)."""

    def __init__(self, info: FuncInfo) -> None:
        self.info = info
        self.out_roots: set[str] = set()

    def walk(self, roots: list[cst.CSTNode]) -> None:
        stack = list(reversed(roots))
        handlers = _HANDLERS
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind in _OWN_SCOPES and node is not self.info.node:
                continue
            if kind not in handlers:
                handlers[kind] = getattr(_DepsCollector, "visit_" + kind.__name__, None)
            handler = handlers[kind]
            if handler is not None:
                handler(self, node)
            stack.extend(reversed(children(node)))

    def _edge(self, targets: list[str], *sources: cst.CSTNode | None) -> None:
        names = {name for source in sources if source is not None for name in N.refs(source)}
        for target in targets:
            self.info.deps.setdefault(target, set()).update(names - {target})

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._edge(N.assigned_names(target.target), node.value)
            if isinstance(target.target, (cst.Subscript, cst.Attribute)) and N.contains_matmul(node.value):
                # ``stats[name] = stats.get(name, 0) + x.T @ x`` inside a forward hook
                self.info.has_matmul_accumulation = True
            elif isinstance(target.target, cst.Subscript) and N.contains_activation_statistic(node.value):
                # ``scales[name] = x.abs().amax(0)`` inside a forward hook (AWQ-style scales)
                self.info.stores_activation_statistic = True

    def visit_AnnAssign(self, node: cst.AnnAssign | cst.NamedExpr) -> None:
        self._edge(N.assigned_names(node.target), node.value)

    visit_NamedExpr = visit_AnnAssign

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._edge(N.assigned_names(node.target), node.value)
        if N.contains_matmul(node.value) or isinstance(node.operator, cst.MatrixMultiplyAssign):
            self.info.has_matmul_accumulation = True
        elif isinstance(node.target, cst.Subscript) and N.contains_activation_statistic(node.value):
            self.info.stores_activation_statistic = True

    def visit_For(self, node: cst.For | cst.CompFor) -> None:
        self._edge(N.assigned_names(node.target), node.iter)

    visit_CompFor = visit_For

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._edge(N.assigned_names(node.asname.name), node.item)

    def visit_Return(self, node: cst.Return) -> None:
        if node.value is not None:
            self.out_roots.update(N.refs(node.value))

    def visit_Call(self, node: cst.Call) -> None:
        method = N.last_part(dotted_name(node.func) or "")
        args = [a.value for a in node.args]
        receiver = dotted_name(node.func.value) if isinstance(node.func, cst.Attribute) else None
        if receiver is not None and method in {"append", "extend", "add", "update", "insert"}:
            self._edge([receiver], *args)
        if method.startswith(("all_gather", "gather")) and len(args) >= 2:
            first = dotted_name(args[0])
            if first is not None:
                self._edge([first], args[1])
        if N.is_log_call(method) and any(
            text is not None and N.LOG_VAL_TEXT.search(text) for text in map(N.string_value, args)
        ):
            self.out_roots.update(*(N.refs(arg) for arg in args))
        if method in {"addmm_", "baddbmm_"}:
            self.info.has_matmul_accumulation = True
        hook_inputs = self.info.params[1:]
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in {"append", "extend"}:
            if any(N.root_part(r) in hook_inputs for arg in args for r in N.refs(arg)):
                # a hook ``(module, inp, out)`` keeping its inputs for a later ``sum(x.T @ x …)``
                self.info.stores_activation_statistic = True
        if receiver is not None and method in {"parameters", "named_parameters", "step"}:
            # an optimizer over a parameter's parameters, or one handed in by the caller (built
            # over the caller's model in ``main``, #991): either way the caller's model is trained
            owner = N.root_part(receiver)
            if owner in self.info.params and owner not in ("self", "cls"):
                self.info.trains_params = True


def prepare(info: FuncInfo) -> None:
    collector = _DepsCollector(info)
    collector.walk(info.body() if info.node is None else [info.node])  # the walk skips nested scopes
    info.flows_out = info.closure(collector.out_roots)
    if info.parent is not None and info.node is not None:
        local = set(info.params) | set(info.deps)
        info.free_names = {name for name in N.refs(info.node.body) if N.root_part(name) not in local}


class FunctionTable:
    """Every function of the submission's sources as the data-flow engine sees it (a
    ``FuncInfo``), and call resolution over the shared module index."""

    def __init__(self, parsed_sources: list[ParsedSource]) -> None:
        self.modules: list[ModuleIndex] = index_submission(parsed_sources)
        self.by_module: dict[str, ModuleIndex] = {}
        self.top: dict[ModuleIndex, FuncInfo] = {}  # each module's top-level code
        self.functions: dict[ModuleIndex, dict[str, FuncInfo]] = {}  # module-level defs by name
        self.classes: dict[ModuleIndex, dict[str, dict[str, FuncInfo]]] = {}  # class -> method -> info
        self.methods: dict[str, list[FuncInfo]] = {}
        self.val_class_attrs: dict[str, dict[str, int]] = {}  # class -> VAL attribute -> line
        self.val_data_classes: set[str] = set()  # classes whose instances hold loaded VAL data
        self.all_functions: list[FuncInfo] = []
        for module in self.modules:
            self._add_module(module)
            self.by_module.setdefault(module.module, module)
        for info in self.all_functions:
            prepare(info)

    def _add_module(self, module: ModuleIndex) -> None:
        parsed = module.parsed
        self.top[module] = FuncInfo(name="<module>", node=None, parsed=parsed)
        self.all_functions.append(self.top[module])
        functions = self.functions[module] = {}
        classes = self.classes[module] = {}
        for statement in module.definitions:
            if isinstance(statement, cst.FunctionDef):
                functions[statement.name.value] = self._function(statement, parsed, None, None)
                continue
            name = statement.name.value
            defs = [item for item in statement.body.body if isinstance(item, cst.FunctionDef)]
            methods: dict[str, FuncInfo] = {}
            for item in defs:  # every def of a name counts for resolution by uniqueness, the last one here
                info = methods[item.name.value] = self._function(item, parsed, name, None)
                self.methods.setdefault(item.name.value, []).append(info)
            classes[name] = methods
            fields, loads_val_data = _val_fields(statement, parsed)
            if loads_val_data and not _mentions_train_data(statement):
                # a class holding both splits keeps field-level taint only (``data.val`` vs ``data.train``)
                self.val_data_classes.add(name)
            if fields:
                self.val_class_attrs.setdefault(name, {}).update(fields)

    def _function(
        self, node: cst.FunctionDef, parsed: ParsedSource, class_name: str | None, parent: FuncInfo | None
    ) -> FuncInfo:
        info = FuncInfo(name=node.name.value, node=node, parsed=parsed, class_name=class_name, parent=parent)
        params = node.params
        star = [params.star_arg] if isinstance(params.star_arg, cst.Param) else []
        info.params = [p.name.value for p in [*params.posonly_params, *params.params, *star, *params.kwonly_params]]
        self.all_functions.append(info)
        for inner in _own_statements(node.body):
            if isinstance(inner, cst.FunctionDef):
                info.nested[inner.name.value] = self._function(inner, parsed, None, info)
        return info

    def class_methods(self, class_name: str, caller: FuncInfo) -> dict[str, FuncInfo] | None:
        """Methods of a submission class by name, the caller's module first."""
        own = self.classes[self.module_of(caller.parsed)].get(class_name)
        found = (self.classes[module][class_name] for module in self.modules if class_name in self.classes[module])
        return own if own is not None else next(found, None)

    def module_of(self, parsed: ParsedSource) -> ModuleIndex:
        for module in self.modules:
            if module.parsed is parsed:
                return module
        raise KeyError(parsed.source.display_name)

    def resolve(self, callee: str, caller: FuncInfo) -> FuncInfo | None:
        """The submission function a call names, or None (library call / unknown)."""
        module = self.module_of(caller.parsed)
        functions, classes = self.functions[module], self.classes[module]
        parts = callee.split(".")
        if len(parts) == 1:
            scope: FuncInfo | None = caller
            while scope is not None:
                if callee in scope.nested:
                    return scope.nested[callee]
                scope = scope.parent
            if callee in functions:
                return functions[callee]
            if callee in module.from_imports:
                source_module, name = module.from_imports[callee]
                target = self.by_module.get(source_module)
                if target is not None and target is not module:
                    return self.functions[target].get(name)
            return None
        head, method = parts[0], parts[-1]
        if len(parts) == 2 and head in ("self", "cls") and caller.class_name:
            return classes.get(caller.class_name, {}).get(method)
        if len(parts) == 2 and head in module.module_imports:
            target = self.by_module.get(module.module_imports[head])
            if target is not None and target is not module:
                return self.functions[target].get(method)
            return None
        if len(parts) == 2 and head in classes:
            return classes[head].get(method)
        if method in _GENERIC_METHODS:
            return None
        candidates = self.methods.get(method, [])
        local = [c for c in candidates if c.parsed is caller.parsed]
        if len(local) == 1:
            return local[0]  # a readable copy beside the decoded source must not make it ambiguous
        if len(candidates) == 1:
            return candidates[0]
        return None


def _val_fields(node: cst.ClassDef, parsed: ParsedSource) -> tuple[dict[str, int], bool]:
    """The fields of a class holding validation data or a path to it, whatever they are called
    (``self.tokens = torch.cat([load(f) for f in glob(h.val_files)])``, or in minified code a
    class-body ``v = os.path.join(d, "fineweb_val_*.bin")``), and whether a method stores *loaded*
    validation data on ``self`` (a call that reads, not a path): instances of such a class are
    validation data as a whole (``ValidationData(h, device)``)."""
    fields: dict[str, int] = {}
    loads = False
    for statement in node.body.body:
        for small in statement.body if isinstance(statement, cst.SimpleStatementLine) else [statement]:
            if isinstance(small, cst.Assign) and _mentions_val_literal(small.value):
                names = [t.target.value for t in small.targets if isinstance(t.target, cst.Name)]
                fields.update(dict.fromkeys(names, parsed.line_of(small)))
        if not isinstance(statement, cst.FunctionDef):
            continue
        for assign in _own_statements(statement.body):
            if isinstance(assign, cst.Assign) and _mentions_val(assign.value):
                names = [n for t in assign.targets for n in N.assigned_names(t.target) if n.startswith("self.")]
                own = [n.removeprefix("self.") for n in names if n.count(".") == 1]
                fields.update(dict.fromkeys(own, parsed.line_of(assign)))
                loads = loads or (bool(names) and _has_loading_call(assign.value))
    return fields, loads


_CONFIG_CALLS = frozenset({"join", "get", "getenv", "str", "Path", "int", "float", "bool", "format"})
_TRAIN_DATA = re.compile(r"(^|_)train_(files|tokens|data|pattern|shards|loader)|fineweb_train", re.IGNORECASE)


def _mentions_train_data(node: cst.CSTNode) -> bool:
    """An identifier (every part of a dotted name is a ``Name``) or a string naming training data."""
    named = (n for n in walk(node) if isinstance(n, (cst.Name, cst.SimpleString)))
    texts = (n.value if isinstance(n, cst.Name) else N.string_value(n) for n in named)
    return any(text is not None and _TRAIN_DATA.search(text) for text in texts)


def _has_loading_call(node: cst.CSTNode) -> bool:
    calls = (current for current in walk(node) if isinstance(current, cst.Call))
    return any(N.last_part(dotted_name(call.func) or "<expr>") not in _CONFIG_CALLS for call in calls)


def _mentions_val(node: cst.CSTNode) -> bool:
    """A validation path literal or a VAL-named read (``h.val_files``, ``load_validation_tokens(…)``)."""
    return _mentions_val_literal(node) or any(
        N.is_val_name(n) or N.is_val_loader_call(N.last_part(n)) for n in N.refs(node)
    )


def _mentions_val_literal(node: cst.CSTNode) -> bool:
    strings = (current for current in walk(node) if isinstance(current, (cst.SimpleString, cst.FormattedString)))
    return any(N.is_val_literal(text) for text in map(N.string_value, strings) if text is not None)


def _own_statements(body: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The statements of a body and of its blocks, a nested ``def`` included but not entered
    (nor classes, lambdas or expressions): what this function itself executes."""
    stack: list[cst.CSTNode] = list(children(body))
    while stack:
        current = stack.pop()
        if isinstance(current, (cst.ClassDef, cst.Lambda)):
            continue
        yield current
        if not isinstance(current, (cst.FunctionDef, cst.BaseExpression)):
            stack.extend(children(current))
