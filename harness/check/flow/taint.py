"""Taint propagation over the submission's functions, producing the ordered effect timeline.

Why an abstract walk instead of a fixpoint over an IR: the rules need statement order inside
loops (score before update, per chunk) and the loop/condition context of every sink across
calls. Walking each function body in order, with loop bodies walked twice for loop-carried
taint and callees analysed once per set of tainted parameters (memoized) and inlined at the
call site, yields exactly that: a program-order list of effects with their loops and
conditions. Nothing is executed.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.index import FuncInfo, SubmissionIndex
from harness.check.flow.model import Cond, Effect, EffectKind, LoopFrame, Summary, Taint, merge
from harness.findings import Step

MAX_CALL_DEPTH = 24
MAX_ANALYSES = 4000
_call_sites = itertools.count(1)


class Engine:
    """Memoized per-function analyses over one submission index."""

    def __init__(self, index: SubmissionIndex) -> None:
        self.index = index
        self.memo: dict[tuple[int, frozenset[str]], Summary] = {}
        self.stack: list[int] = []
        self.reached: set[int] = set()
        self.analyses = 0
        self.code_cache: dict[int, str] = {}

    def analyze(self, info: FuncInfo, seed: dict[str, Taint]) -> Summary | None:
        key = (info.uid, frozenset(seed))
        if key in self.memo:
            return self.memo[key]
        if info.uid in self.stack or len(self.stack) >= MAX_CALL_DEPTH or self.analyses >= MAX_ANALYSES:
            return None
        self.analyses += 1
        self.reached.add(info.uid)
        self.stack.append(info.uid)
        try:
            walk = _Walk(self, info, dict(seed))
            walk.run()
        finally:
            self.stack.pop()
        returned = walk.returned
        if returned is not None and any(e.kind is EffectKind.CALIBRATION and e.tainted for e in walk.effects):
            returned = replace(returned, via_calibration=True)
        if returned is not None and any(e.kind is EffectKind.SCORE and e.tainted for e in walk.effects):
            returned = replace(returned, from_score=True)
        summary = Summary(
            effects=walk.effects,
            returned=returned,
            returned_parts=walk.returned_parts if walk.tuple_returns_only else None,
            tainted_params={p: walk.taint[p] for p in info.params if p in walk.taint and p not in seed},
        )
        self.memo[key] = summary
        return summary

    def timeline(self, info: FuncInfo) -> list[Effect]:
        summary = self.analyze(info, {})
        effects = summary.effects if summary is not None else []
        return [replace(effect, order=position) for position, effect in enumerate(effects)]


class _Loop:
    def __init__(self, node: cst.For | cst.While, uid: int, vary: set[str], label: str, line: int) -> None:
        self.node = node
        self.uid = uid
        self.vary = vary
        self.targets = tuple(N.assigned_names(node.target)) if isinstance(node, cst.For) else ()
        self.label = label
        self.line = line
        self.over_range = isinstance(node, cst.For) and _range_call(node.iter) is not None


def _range_call(node: cst.BaseExpression) -> cst.Call | None:
    if isinstance(node, cst.Call) and N.dotted_name(node.func) in ("range", "trange", "tqdm.trange"):
        return node
    return None


def _direct_statements(body: cst.BaseSuite) -> list[cst.CSTNode]:
    """Statements of a loop body, descending into if/with/try but not into nested loops/defs."""
    found: list[cst.CSTNode] = []
    stack: list[cst.CSTNode] = list(body.body)
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, (cst.For, cst.While, cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(node, (cst.If, cst.With, cst.Try, cst.Else, cst.ExceptHandler, cst.Finally)):
            for child in N.children(node):
                if isinstance(child, (cst.IndentedBlock, cst.SimpleStatementSuite)):
                    stack.extend(child.body)
                elif isinstance(child, (cst.If, cst.Else, cst.ExceptHandler, cst.Finally)):
                    stack.append(child)
    return found


def _loop_vary(node: cst.For | cst.While) -> set[str]:
    """Names whose value changes from one iteration to the next at this loop's own level."""
    vary: set[str] = set(N.assigned_names(node.target)) if isinstance(node, cst.For) else set()
    for statement in _direct_statements(node.body):
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.AugAssign):
                vary.update(N.assigned_names(small.target))
            elif isinstance(small, cst.Assign) and isinstance(node, cst.While):
                for target in small.targets:
                    vary.update(N.assigned_names(target.target))
    return vary


def _ends_in_exit(block: cst.BaseSuite) -> bool:
    if not block.body:
        return False
    last = block.body[-1]
    if isinstance(block, cst.SimpleStatementSuite):
        return isinstance(last, (cst.Return, cst.Continue, cst.Break, cst.Raise))
    if isinstance(last, cst.SimpleStatementLine) and last.body:
        return isinstance(last.body[-1], (cst.Return, cst.Continue, cst.Break, cst.Raise))
    return False


class _Walk:
    """One analysis of one function under one set of tainted names."""

    def __init__(self, engine: Engine, info: FuncInfo, taint: dict[str, Taint]) -> None:
        self.engine = engine
        self.info = info
        self.parsed = info.parsed
        self.file = info.file
        self.taint = taint
        self.effects: list[Effect] = []
        self.local_lines: list[int] = []  # line in this function that produced effects[i]
        self.ticks: list[float] = []  # when effects[i] happened, in this walk's program order
        self.clock = 0
        self.assigned_at: dict[str, int] = {}  # name -> clock when it was last bound
        self.returned: Taint | None = None
        self.returned_parts: tuple[Taint | None, ...] | None = None
        self.tuple_returns_only = True
        self.call_parts: dict[int, tuple[Taint | None, ...]] = {}  # id(call) -> per-element result
        self.loops: list[_Loop] = []
        self.conds: list[Cond] = []
        self.emit = True
        self.warm_depth = 1 if N.WARMUP_WORD.search(info.name) else 0
        self.hooks_active = False
        self.discard_lines: list[int] = []
        self.loop_uids: dict[int, int] = {}
        self.conditional_depth = 0
        self._current_call: cst.Call | None = None
        self.instances: dict[str, str] = {}  # local name -> class with VAL fields

    def _code(self, node: cst.CSTNode) -> str:
        """Source text of a node, cached: libcst's code generation is the costliest call here."""
        key = id(node)
        text = self.engine.code_cache.get(key)
        if text is None:
            text = self.engine.code_cache[key] = self.parsed.code_of(node)
        return text

    # ----------------------------------------------------------------- statements
    def run(self) -> None:
        body = self.info.body()
        if self.info.node is None:
            body = [s for s in body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
        self._block(body)
        if self.discard_lines:
            last_discard = max(self.discard_lines)
            for position, effect in enumerate(self.effects):
                if effect.kind is EffectKind.UPDATE and self.local_lines[position] < last_discard:
                    self.effects[position] = replace(effect, discarded=True)

    def _block(self, statements: list[cst.CSTNode]) -> None:
        pushed = 0
        for statement in statements:
            self._statement(statement)
            if isinstance(statement, cst.If) and statement.orelse is None and _ends_in_exit(statement.body):
                self.conds.append(Cond(self.parsed, statement.test, False, self.parsed.line_of(statement)))
                pushed += 1
        if pushed:
            del self.conds[-pushed:]

    def _statement(self, node: cst.CSTNode) -> None:
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                self._small(small)
        elif isinstance(node, cst.BaseSmallStatement):
            self._small(node)
        elif isinstance(node, cst.If):
            self._if(node)
        elif isinstance(node, (cst.For, cst.While)):
            self._loop(node)
        elif isinstance(node, cst.With):
            warm = any(_mentions_warm(item.item) for item in node.items)
            for item in node.items:
                value = self._expr(item.item)
                if item.asname is not None:
                    self._bind(item.asname.name, value, item.item)
            self.warm_depth += warm
            self._block(list(node.body.body))
            self.warm_depth -= warm
        elif isinstance(node, (cst.Try, cst.TryStar)):
            self.conditional_depth += 1
            self._block(list(node.body.body))
            for handler in node.handlers:
                self._block(list(handler.body.body))
            if node.orelse is not None:
                self._block(list(node.orelse.body.body))
            self.conditional_depth -= 1
            if node.finalbody is not None:
                self._block(list(node.finalbody.body.body))
        elif isinstance(node, cst.Match):
            self._expr(node.subject)
            self.conditional_depth += 1
            for case in node.cases:
                self._block(list(case.body.body))
            self.conditional_depth -= 1

    def _if(self, node: cst.If) -> None:
        test_taint = self._expr(node.test)
        line = self.parsed.line_of(node)
        if test_taint is not None and test_taint.from_score and _mentions_state_snapshot(node.body):
            self._emit(EffectKind.SELECTION, line, f"model state kept when `{_short(self._code(node.test))}`",
                       test_taint, set(N.refs(node.test)))
        warm = _mentions_warm(node.test)
        self.warm_depth += warm
        self.conditional_depth += 1
        self.conds.append(Cond(self.parsed, node.test, True, line))
        self._block(list(node.body.body))
        self.conds.pop()
        self.warm_depth -= warm
        if node.orelse is not None:
            self.conds.append(Cond(self.parsed, node.test, False, line))
            if isinstance(node.orelse, cst.If):
                self._if(node.orelse)
            else:
                self._block(list(node.orelse.body.body))
            self.conds.pop()
        self.conditional_depth -= 1

    def _loop(self, node: cst.For | cst.While) -> None:
        line = self.parsed.line_of(node)
        header = node.iter if isinstance(node, cst.For) else node.test
        header_taint = self._expr(header)
        uid = self.loop_uids.setdefault(id(node), next(_call_sites))
        label = ("for " + _short(self._code(node.target)) + " in " + _short(self._code(node.iter))
                 if isinstance(node, cst.For) else "while " + _short(self._code(node.test)))
        loop = _Loop(node, uid, _loop_vary(node), label, line)
        warm = bool(N.WARMUP_WORD.search(label))
        pushed_cond = False
        range_call = _range_call(node.iter) if isinstance(node, cst.For) else None
        if range_call is not None and len(range_call.args) == 1:
            self.conds.append(Cond(self.parsed, range_call.args[0].value, True, line, range_count=True))
            pushed_cond = True
        self.loops.append(loop)
        self.warm_depth += warm
        outer_emit = self.emit
        passes = (False, True) if outer_emit else (False,)
        for emit in passes:
            self.emit = emit
            if isinstance(node, cst.For):
                self._bind(node.target, header_taint, node.iter)
            self._block(list(node.body.body))
        self.emit = outer_emit
        self.warm_depth -= warm
        self.loops.pop()
        if pushed_cond:
            self.conds.pop()
        if node.orelse is not None:
            self._block(list(node.orelse.body.body))

    def _small(self, node: cst.BaseSmallStatement) -> None:
        line = self.parsed.line_of(node)
        if isinstance(node, cst.Assign):
            value = self._expr(node.value)
            if isinstance(node.value, cst.Call):
                class_name = N.dotted_name(node.value.func)
                if class_name in self.engine.index.val_class_attrs:
                    for target in node.targets:
                        if isinstance(target.target, cst.Name):
                            self.instances[target.target.value] = class_name
                if class_name in self.engine.index.val_data_classes and value is None:
                    value = Taint((Step(self.file, line, f"VAL source: {class_name}(…) (an instance holding "
                                                         "loaded validation data)"),))
            for target in node.targets:
                self._accumulate_if_self_add(target.target, node.value, value, line)
                parts = self._parts_of(node.value, target.target)
                if parts is not None:
                    for element, part in zip(target.target.elements, parts):  # type: ignore[attr-defined]
                        self._bind(element.value, part, node.value)
                elif isinstance(node.value, cst.Dict) and isinstance(target.target, cst.Name):
                    self._bind_dict(target.target.value, node.value, value, line)
                else:
                    self._bind(target.target, value, node.value)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                self._bind(node.target, self._expr(node.value), node.value)
        elif isinstance(node, cst.AugAssign):
            self._augassign(node, line)
        elif isinstance(node, cst.Expr):
            self._expr(node.value)
        elif isinstance(node, cst.Return):
            if isinstance(node.value, cst.Tuple) and not any(isinstance(e, cst.StarredElement) for e in node.value.elements):
                parts = tuple(self._expr(e.value) for e in node.value.elements)
                if self.returned_parts is None:
                    self.returned_parts = parts
                elif len(self.returned_parts) == len(parts):
                    self.returned_parts = tuple(merge(a, b) for a, b in zip(self.returned_parts, parts))
                else:
                    self.tuple_returns_only = False
            else:
                self.tuple_returns_only = False
            if node.value is not None:
                value = self._expr(node.value)
                if value is not None:
                    self.returned = merge(self.returned, value.extend(Step(self.file, line, f"returned from {self.info.display}")))
                    if N.SCORE_FUNCTION.search(self.info.name):
                        self._emit(EffectKind.SCORE, line, f"score returned by {self.info.display}", value,
                                   set(N.refs(node.value)))
        elif isinstance(node, cst.Del):
            self.discard_lines.append(line)
        elif isinstance(node, cst.Raise) and node.exc is not None:
            self._expr(node.exc)

    def _augassign(self, node: cst.AugAssign, line: int) -> None:
        value = self._expr(node.value)
        targets = N.assigned_names(node.target)
        keyed_by_val = False
        if isinstance(node.target, cst.Subscript):
            index_taint = self._expr(node.target.slice[0]) if node.target.slice else None
            keyed_by_val = index_taint is not None
            value = merge(value, index_taint)
        if value is not None and isinstance(node.operator, (cst.AddAssign, cst.SubtractAssign, cst.MatrixMultiplyAssign)):
            local_refs = set(N.refs(node.value))
            if not isinstance(node.operator, cst.SubtractAssign) and (
                    N.contains_matmul(node.value) or isinstance(node.operator, cst.MatrixMultiplyAssign)):
                self._emit(EffectKind.CALIBRATION, line,
                           f"activation statistics `{_short(self._code(node))}`", value, local_refs)
                value = replace(value, via_calibration=True)
            elif targets and not keyed_by_val and self._is_score_target(targets[0]):
                self._emit(EffectKind.SCORE, line, f"score accumulated into {targets[0]}", value, local_refs,
                           produced_from=local_refs - set(targets))
                value = replace(value, from_score=True)
                for target in targets:
                    self.taint.pop(target, None)
        if value is not None:
            for target in targets:
                self._taint_name(target, value, line, f"{target} {self._code(node.operator).strip()} "
                                 f"{_short(self._code(node.value))}")

    def _parts_of(self, value_node: cst.BaseExpression, target: cst.BaseExpression) -> tuple[Taint | None, ...] | None:
        """Element-wise results for ``a, b = x, y`` and ``train, val = load_both()``: only the
        element that is validation data becomes VAL."""
        if not isinstance(target, (cst.Tuple, cst.List)) or any(
                isinstance(e, cst.StarredElement) for e in target.elements):
            return None
        if isinstance(value_node, (cst.Tuple, cst.List)) and len(value_node.elements) == len(target.elements) \
                and not any(isinstance(e, cst.StarredElement) for e in value_node.elements):
            return tuple(self._lookup_only(e.value) for e in value_node.elements)
        parts = self.call_parts.get(id(value_node))
        if parts is not None and len(parts) == len(target.elements):
            return parts
        return None

    def _lookup_only(self, node: cst.BaseExpression) -> Taint | None:
        """Taint of an already-evaluated element, without emitting its effects again."""
        saved = self.emit
        self.emit = False
        try:
            return self._expr(node)
        finally:
            self.emit = saved

    def _bind_dict(self, name: str, value_node: cst.Dict, value: Taint | None, line: int) -> None:
        """``data = {"train": tr, "val": va}``: keys with literal names are tracked one by one."""
        keyed: dict[str, Taint | None] = {}
        for element in value_node.elements:
            key = N.string_value(element.key) if isinstance(element, cst.DictElement) else None
            if key is None or not key.isidentifier():
                self._bind(cst.Name(name), value, value_node)
                return
            keyed[key] = self._lookup_only(element.value)
        self.assigned_at[name] = self.clock
        if self.conditional_depth == 0:
            self._kill(name)
        for key, taint in keyed.items():
            if taint is not None:
                self._taint_name(f"{name}.{key}", taint, line, f"{name}[{key!r}] = …")

    def _accumulate_if_self_add(self, target: cst.BaseExpression, value_node: cst.BaseExpression,
                                value: Taint | None, line: int) -> None:
        """``loss_sum = loss_sum + nll.sum()`` is the same accumulation as ``+=``."""
        name = N.dotted_name(target)
        if value is None or name is None or not isinstance(value_node, cst.BinaryOperation):
            return
        if not isinstance(value_node.operator, cst.Add) or name not in set(N.refs(value_node)):
            return
        if N.contains_matmul(value_node):
            self._emit(EffectKind.CALIBRATION, line, f"activation statistics `{name} = {_short(self._code(value_node))}`",
                       value, set(N.refs(value_node)))
        elif self._is_score_target(name):
            self._emit(EffectKind.SCORE, line, f"score accumulated into {name}", value, set(N.refs(value_node)),
                       produced_from=set(N.refs(value_node)) - {name})

    def _is_score_target(self, name: str) -> bool:
        """An accumulator that can become the reported score: returned or logged as val_*,
        a parameter (the caller's accumulator) or an attribute — not a local training log."""
        last = N.last_part(name)
        if N.TRAIN_WORD.search(last) or last.startswith("tr_") or N.DENOMINATOR_NAME.search(last):
            # a training log, or a byte/token count: the denominator says nothing about
            # whether the model scored a token before training on it
            return False
        root = N.root_part(name)
        return root in self.info.params or "." in name or name in self.info.flows_out or root in self.info.flows_out

    # ---------------------------------------------------------------- bindings
    def _bind(self, target: cst.CSTNode, value: Taint | None, value_node: cst.CSTNode) -> None:
        line = self.parsed.line_of(target)
        keyed = _literal_key(target) if isinstance(target, cst.Subscript) else None
        if keyed is not None:
            self.assigned_at[keyed] = self.clock
            if value is not None:
                self._taint_name(keyed, value, line, f"{keyed} = {_short(self._code(value_node))}")
            return
        for name in N.assigned_names(target):
            self.assigned_at[name] = self.clock
            if value is not None:
                self._taint_name(name, value, line, f"{name} = {_short(self._code(value_node))}")
            elif self.conditional_depth == 0 and not isinstance(target, cst.Subscript):
                self._kill(name)

    def _taint_name(self, name: str, value: Taint, line: int, note: str) -> None:
        self.assigned_at[name] = self.clock
        if name not in self.taint:
            self.taint[name] = value.extend(Step(self.file, line, note))

    def _kill(self, name: str) -> None:
        prefix = name + "."
        for key in [k for k in self.taint if k == name or k.startswith(prefix)]:
            del self.taint[key]

    # ------------------------------------------------------------- expressions
    def _lookup(self, dotted: str, node: cst.CSTNode) -> Taint | None:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.taint.get(".".join(parts[:end]))
            if found is not None:
                return found
        if N.is_val_name(dotted):
            return Taint((Step(self.file, self.parsed.line_of(node), f"VAL source: {dotted}"),))
        if len(parts) == 2:
            class_name = self.instances.get(parts[0], parts[0])
            fields = self.engine.index.val_class_attrs.get(class_name, {})
            if parts[1] in fields:
                return Taint((Step(self.file, self.parsed.line_of(node),
                                   f"VAL source: {dotted} (field {class_name}.{parts[1]} holds a validation path)"),))
        return None

    def _expr(self, node: cst.CSTNode) -> Taint | None:
        kind = type(node)
        if kind is cst.Name or kind is cst.Attribute:
            dotted = N.dotted_name(node)  # type: ignore[arg-type]
            if dotted is not None:
                return self._lookup(dotted, node)
            return self._expr(node.value) if kind is cst.Attribute else None  # type: ignore[attr-defined]
        if kind is cst.Call:
            return self._call(node)  # type: ignore[arg-type]
        if kind is cst.SimpleString or kind is cst.ConcatenatedString:
            text = N.string_value(node)  # type: ignore[arg-type]
            if text is not None and N.is_val_literal(text):
                return Taint((Step(self.file, self.parsed.line_of(node), f"VAL source: literal {text!r}"),))
            if kind is cst.ConcatenatedString:
                return merge(self._expr(node.left), self._expr(node.right))  # type: ignore[attr-defined]
            return None
        if kind is cst.Arg:
            return self._expr(node.value)  # type: ignore[attr-defined]
        if kind is cst.Subscript:
            keyed = _literal_key(node)  # type: ignore[arg-type]
            if keyed is not None:
                return self._lookup(keyed, node)
        if kind in _OPAQUE:
            return None
        if kind is cst.NamedExpr:
            value = self._expr(node.value)  # type: ignore[attr-defined]
            self._bind(node.target, value, node.value)  # type: ignore[attr-defined]
            return value
        if kind in _COMPREHENSIONS:
            taint = self._comp_for(node.for_in)  # type: ignore[attr-defined]
            if kind is cst.DictComp:
                return merge(taint, merge(self._expr(node.key), self._expr(node.value)))  # type: ignore[attr-defined]
            return merge(taint, self._expr(node.elt))  # type: ignore[attr-defined]
        result: Taint | None = None
        if kind is cst.FormattedString:
            text = N.string_value(node) or ""  # type: ignore[arg-type]
            if N.is_val_literal(text):
                result = Taint((Step(self.file, self.parsed.line_of(node), f"VAL source: literal {text!r}"),))
        for child in N.children(node):
            result = merge(result, self._expr(child))
        return result

    def _comp_for(self, comp: cst.CompFor) -> Taint | None:
        taint = self._expr(comp.iter)
        self._bind(comp.target, taint, comp.iter)
        for condition in comp.ifs:
            self._expr(condition.test)
        if comp.inner_for_in is not None:
            taint = merge(taint, self._comp_for(comp.inner_for_in))
        return taint

    def _call(self, call: cst.Call) -> Taint | None:
        name = N.callee_name(call)
        method = N.last_part(name)
        line = self.parsed.line_of(call)
        receiver: Taint | None = None
        if isinstance(call.func, cst.Attribute):
            receiver = self._expr(call.func.value)
        elif not isinstance(call.func, cst.Name):
            receiver = self._expr(call.func)
        arg_taints = [self._expr(arg.value) for arg in call.args]
        args_taint: Taint | None = None
        for taint in arg_taints:
            args_taint = merge(args_taint, taint)
        call_refs = set(N.refs(call))
        attribute_call = isinstance(call.func, cst.Attribute)

        if method == "backward" and attribute_call:
            self._emit(EffectKind.UPDATE, line, f"{_short(self._code(call))}", merge(receiver, args_taint),
                       set(N.refs(call.func.value)))
            return None
        if name in ("torch.autograd.grad", "autograd.grad"):
            self._emit(EffectKind.UPDATE, line, f"{name}(…)", args_taint, call_refs)
            return args_taint
        if attribute_call and method in N.PARAM_WRITE_METHODS and args_taint is not None and _is_param_like(call.func.value):
            self._emit(EffectKind.UPDATE, line, f"in-place parameter write {_short(self._code(call))}",
                       args_taint, call_refs)
            return None
        if N.CALIB_CALL.search(method) and args_taint is not None and not args_taint.via_calibration:
            self._emit(EffectKind.CALIBRATION, line, f"quantization calibration {name}(…)", args_taint, call_refs)
            if self._is_artifact(call, name, method):
                self._emit(EffectKind.ARTIFACT, line, f"{name}(…)", None, call_refs)
            return replace(args_taint, via_calibration=True)
        target = self.engine.index.resolve(name, self.info) if name != "<expr>" else None
        if target is self.info:
            target = None
        artifact = self._is_artifact(call, name, method)
        if artifact and target is None:
            self._emit(EffectKind.ARTIFACT, line, f"{name}(…)", args_taint, call_refs)
            return args_taint
        if method == "load_state_dict":
            self.discard_lines.append(line)
        if method in ("register_forward_hook", "register_forward_pre_hook"):
            self._note_hook(call)
        if target is None and _is_collective_fill(name) and len(call.args) >= 2:
            rest: Taint | None = None
            for taint in arg_taints[1:]:
                rest = merge(rest, taint)
            first = N.dotted_name(call.args[0].value)
            if rest is not None and first is not None:
                self._taint_name(first, rest, line, f"{first} ← {name}(…)")
        pairs = list(zip(call.args, arg_taints))
        self._inline_function_arguments(pairs, call_refs, line)
        if target is not None:
            bound_self = isinstance(call.func, cst.Attribute) and target.class_name is not None
            self._current_call = call
            returned = self._inline(target, pairs, bound_self, receiver, call_refs, line)
            self._current_call = None
            if artifact:
                self._emit(EffectKind.ARTIFACT, line, f"{name}(…)", args_taint, call_refs)
            if N.is_val_loader_call(method) and returned is None:
                returned = Taint((Step(self.file, line, f"VAL source: {name}(…)"),))
            return returned
        if N.is_val_loader_call(method):
            return merge(Taint((Step(self.file, line, f"VAL source: {name}(…)"),)), args_taint)
        if attribute_call and method in N.MUTATOR_METHODS and args_taint is not None:
            holder = N.dotted_name(call.func.value)
            if holder is not None:
                if (method in ("add_", "index_add_") or (method in ("append", "extend")
                                                          and N.SCORE_LIST_NAME.search(N.last_part(holder)))) \
                        and self._is_score_target(holder):
                    self._emit(EffectKind.SCORE, line, f"score accumulated into {holder}", args_taint, call_refs,
                               produced_from=call_refs - {holder})
                self._taint_name(holder, args_taint, line, f"{holder}.{method}({_short(self._code(call.args[0].value)) if call.args else ''})")
        if self.hooks_active and args_taint is not None and receiver is None and method not in N.MUTATOR_METHODS:
            self._emit(EffectKind.CALIBRATION, line,
                       f"forward pass `{_short(self._code(call))}` with statistics hooks registered",
                       args_taint, call_refs)
            return replace(args_taint, via_calibration=True)
        return merge(receiver, args_taint)

    def _is_artifact(self, call: cst.Call, name: str, method: str) -> bool:
        lowered = method.lower()
        if name in ("torch.save", "save_file", "safetensors.torch.save_file") or lowered == "save_file":
            return True
        if lowered in ("compress", "compress_stream") and isinstance(call.func, cst.Attribute):
            return bool(N.ARTIFACT_COMPRESS_ROOT.search(self._code(call.func.value).lower()))
        return bool(N.ARTIFACT_QUANT_CALL.search(lowered)) and "dequant" not in lowered

    def _note_hook(self, call: cst.Call) -> None:
        for arg in call.args:
            referenced = N.dotted_name(arg.value)
            function = self.engine.index.resolve(referenced, self.info) if referenced else None
            if function is not None and _accumulates_statistics(function):
                self.hooks_active = True
            if isinstance(arg.value, cst.Call):
                factory = N.dotted_name(arg.value.func)
                made = self.engine.index.resolve(factory, self.info) if factory else None
                if made is not None and _accumulates_statistics(made):
                    self.hooks_active = True

    def _inline_function_arguments(self, pairs: list[tuple[cst.Arg, Taint | None]], call_refs: set[str],
                                   line: int) -> None:
        """``timed_eval("label", eval_val, h, device, val_data, model)``: a submission function
        passed as an argument is called by the wrapper with the arguments that follow it."""
        for position, (arg, _) in enumerate(pairs):
            referenced = N.dotted_name(arg.value) if arg.keyword is None and not arg.star else None
            if referenced is None:
                continue
            function = self.engine.index.resolve(referenced, self.info)
            if function is None or function is self.info:
                continue
            rest = [(a, t) for a, t in pairs[position + 1 :] if not a.star]
            self._inline(function, rest, False, None, call_refs, line)

    def _inline(self, target: FuncInfo, pairs: list[tuple[cst.Arg, Taint | None]], bound_self: bool,
                receiver: Taint | None, call_refs: set[str], line: int) -> Taint | None:
        params = list(target.params)
        seed: dict[str, Taint] = {}
        if bound_self and params:
            if receiver is not None:
                seed[params[0]] = receiver
            params = params[1:]
        enter = Step(target.file, target.line, f"enters {target.display}")
        arg_names: dict[str, str] = {}
        position = 0
        for arg, taint in pairs:
            if arg.star:
                continue
            if arg.keyword is not None:
                param = arg.keyword.value
            elif position < len(params):
                param = params[position]
                position += 1
            else:
                continue
            dotted = N.dotted_name(arg.value)
            if dotted is not None:
                arg_names[param] = dotted
            if taint is not None and param in target.params:
                seed[param] = taint.extend(Step(enter.file, enter.line, f"enters {target.display}({param})"))
        if target.parent is not None:
            for key, value in self.taint.items():
                if N.root_part(key) not in target.params:
                    seed.setdefault(key, value)
        summary = self.engine.analyze(target, seed)
        if summary is None:
            result: Taint | None = receiver
            for _, taint in pairs:
                result = merge(result, taint)
            return result
        if self.emit:
            prefix = next(_call_sites)
            frames = self._frames(call_refs)
            for effect in summary.effects:
                lifted = replace(
                    effect,
                    loops=frames + tuple(replace(f, uid=(prefix,) + f.uid) for f in effect.loops),
                    conds=tuple(self.conds) + effect.conds,
                    functions=(self.info.display,) + effect.functions,
                    function_ids=(self.info.uid,) + effect.function_ids,
                    calls=(Step(self.file, line, f"{target.display}(…)"),) + effect.calls,
                    call_names=(frozenset(call_refs),) + effect.call_names,
                    warmup=effect.warmup or self.warm_depth > 0,
                )
                self._append(lifted, line)
        for param, taint in summary.tainted_params.items():
            if param in arg_names:
                self._taint_name(arg_names[param], taint, line, f"{arg_names[param]} filled by {target.display}")
        if summary.returned_parts is not None and self._current_call is not None:
            step = Step(self.file, line, f"result of {target.display}(…)")
            self.call_parts[id(self._current_call)] = tuple(
                part.extend(step) if part is not None else None for part in summary.returned_parts)
        if summary.returned is not None:
            return summary.returned.extend(Step(self.file, line, f"result of {target.display}(…)"))
        return None

    # ------------------------------------------------------------------ effects
    def _frames(self, local_refs: set[str]) -> tuple[LoopFrame, ...]:
        closure = self.info.closure(local_refs) if self.loops else set()
        return tuple(
            LoopFrame(uid=(loop.uid,), targets=loop.targets, advancing=bool(closure & loop.vary), over_range=loop.over_range,
                      label=loop.label, file=self.file, line=loop.line)
            for loop in self.loops
        )

    def _emit(self, kind: EffectKind, line: int, note: str, taint: Taint | None, local_refs: set[str],
              produced_from: set[str] | None = None) -> None:
        """Record an effect. A score is placed where its value was *produced*: ``loss_sum +=
        ptl.sum()`` after ``backward()`` still scores the loss computed before the update."""
        if not self.emit:
            return
        effect = Effect(kind=kind, file=self.file, line=line, note=note, taint=taint, loops=self._frames(local_refs),
                        conds=tuple(self.conds), functions=(self.info.display,), function_ids=(self.info.uid,),
                        warmup=self.warm_depth > 0)
        if produced_from:
            produced = [self.assigned_at[N.root_part(r)] for r in produced_from
                        if N.root_part(r) in self.assigned_at and self._lookup(r, None) is not None]
            if produced:
                self._append(effect, line, at=max(produced) - 0.5)
                return
        self._append(effect, line)

    def _append(self, effect: Effect, line: int, at: float | None = None) -> None:
        if at is None or not self.ticks or at >= self.ticks[-1]:
            self.effects.append(effect)
            self.local_lines.append(line)
            self.ticks.append(float(self.clock) if at is None else at)
            self.clock += 1
            return
        position = next(i for i, tick in enumerate(self.ticks) if tick > at)
        self.effects.insert(position, effect)
        self.local_lines.insert(position, line)
        self.ticks.insert(position, at)


_OPAQUE = frozenset({cst.Lambda, cst.Integer, cst.Float, cst.Imaginary, cst.Ellipsis})
_COMPREHENSIONS = frozenset({cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp})


def _literal_key(node: cst.Subscript) -> str | None:
    """``state["val_tokens"]`` → ``state.val_tokens``: literal keys are tracked like fields."""
    base = N.dotted_name(node.value)
    if base is None or len(node.slice) != 1:
        return None
    index = node.slice[0].slice
    if not isinstance(index, cst.Index) or not isinstance(index.value, cst.SimpleString):
        return None
    key = N.string_value(index.value)
    return f"{base}.{key}" if key is not None and key.isidentifier() else None


def _mentions_warm(node: cst.CSTNode) -> bool:
    return any(N.WARMUP_WORD.search(name) for name in N.refs(node))


def _is_collective_fill(name: str) -> bool:
    """``dist.all_gather(out, x)`` / ``all_gather_object(out, obj)`` fill their first argument."""
    method = N.last_part(name)
    if not N.COLLECTIVE_FILL.match(method):
        return False
    return method.startswith("all_") or N.root_part(name) in ("dist", "torch", "distributed")


def _is_param_like(node: cst.BaseExpression) -> bool:
    text = N.dotted_name(node) or ""
    parts = set(text.split("."))
    return bool(parts & {"data", "weight", "bias", "param", "p", "params"}) or "param" in text


def _accumulates_statistics(function: FuncInfo) -> bool:
    if function.has_matmul_accumulation:
        return True
    return any(_accumulates_statistics(inner) for inner in function.nested.values())


def _mentions_state_snapshot(block: cst.BaseSuite) -> bool:
    stack: list[cst.CSTNode] = [block]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Call):
            method = N.last_part(N.callee_name(node))
            if method in N.STATE_SNAPSHOT_CALLS or method == "save":
                return True
        stack.extend(N.children(node))
    return False


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
