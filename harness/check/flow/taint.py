"""Taint propagation over the submission's functions, producing the ordered effect timeline.

Why an abstract walk instead of a fixpoint over an IR: the rules need statement order inside
loops (score before update, per chunk) and the loop/condition context of every sink across
calls. Walking each function body in order, with loop bodies walked twice for loop-carried
taint and callees analysed once per set of tainted parameters (memoized) and inlined at the
call site, yields exactly that: a program-order list of effects with their loops and
conditions. Nothing is executed.
"""

from __future__ import annotations

import re
from dataclasses import replace

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.calls import MAX_FIELD_DEPTH, CallHandling, call_sites, literal_key, wrapped_function
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.loops import Loop, ends_in_exit, loop_vary, range_call
from harness.check.flow.model import Cond, Effect, EffectKind, LoopFrame, Summary, Taint, merge
from harness.check.flow.scores import ScoreSinks
from harness.findings import Step

MAX_CALL_DEPTH = 24
MAX_ANALYSES = 4000


class Engine:
    """Memoized per-function analyses over one submission index."""

    def __init__(self, index: FunctionTable) -> None:
        self.index = index
        self.memo: dict[tuple[int, frozenset[str], frozenset[tuple[str, str]]], Summary] = {}
        self.stack: list[int] = []
        self.reached: set[int] = set()
        self.analyses = 0
        self.code_cache: dict[int, str] = {}
        self.read_outside_logs: dict[int, set[str]] = {}  # FuncInfo.uid -> names read outside logs
        self.zero_started: dict[int, set[str]] = {}  # FuncInfo.uid -> locals bound to a zero

    def analyze(self, info: FuncInfo, seed: dict[str, Taint], classes: dict[str, str] | None = None) -> Summary | None:
        """``classes``: parameters known to hold an instance of a submission class (the caller
        built it), so their generic methods (``loader.next_batch``) resolve in the callee."""
        key = (info.uid, frozenset(seed), frozenset((classes or {}).items()))
        if key in self.memo:
            return self.memo[key]
        if info.uid in self.stack or len(self.stack) >= MAX_CALL_DEPTH or self.analyses >= MAX_ANALYSES:
            return None
        self.analyses += 1
        self.reached.add(info.uid)
        self.stack.append(info.uid)
        try:
            walk = _Walk(self, info, dict(seed))
            walk.instances.update(classes or {})
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
            self_fields=_self_fields(info, walk.taint),
        )
        self.memo[key] = summary
        return summary

    def timeline(self, info: FuncInfo) -> list[Effect]:
        summary = self.analyze(info, {})
        effects = summary.effects if summary is not None else []
        return [replace(effect, order=position) for position, effect in enumerate(effects)]


def _self_fields(info: FuncInfo, taint: dict[str, Taint]) -> dict[str, Taint]:
    """``self.tokens`` tainted by a method (``__init__`` storing VAL): the instance's VAL fields,
    nested ones included (``self.stream.tokens`` of a loader wrapping a shard stream, #728)."""
    if info.class_name is None or not info.params:
        return {}
    prefix = info.params[0] + "."
    return {
        name[len(prefix) :]: value
        for name, value in taint.items()
        if name.startswith(prefix) and name.count(".", len(prefix)) < MAX_FIELD_DEPTH
    }


class _Walk(CallHandling, ScoreSinks):
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
        self.loops: list[Loop] = []
        self.conds: list[Cond] = []
        self.emit = True
        self.warm_depth = 1 if N.WARMUP_WORD.search(info.name) else 0
        self.hooks_active = False
        # name -> (loops, conditions) around its last binding: a score read after a loop from a
        # name bound inside it was produced by that loop's last iteration
        self.assigned_within: dict[str, tuple[tuple[Loop, ...], tuple[Cond, ...]]] = {}
        self.discard_lines: list[int] = []  # lines restoring a saved state (load_state_dict)
        self.score_controlled: dict[str, Taint] = {}  # names bound under a test on a VAL score
        self.ahead: set[str] = set()  # names holding a later chunk than the loop's current one
        self.state_reads: list[tuple[int, str]] = []  # (line, object) whose weights are read out
        self.deleted: list[tuple[int, set[str]]] = []  # (line, names) of ``del`` statements
        self.fresh_objects: set[str] = set()  # names bound to a constructed module/optimizer
        self.local_refs: list[set[str]] = []  # names each effect's local statement read
        self.loop_uids: dict[int, int] = {}
        self.conditional_depth = 0
        self.no_grad_depth = 0
        self._current_call: cst.Call | None = None
        self.aliases: dict[str, FuncInfo] = {}
        self.call_fields: dict[int, dict[str, Taint]] = {}  # id(constructor call) -> VAL fields
        self._last_summary: Summary | None = None
        self.instances: dict[str, str] = {}  # local name -> submission class it was built from
        # names bound (directly or through other bindings) from the training-data pipeline: an
        # update reading one of them *and* VAL mixes validation batches into training steps
        self.train_fed: set[str] = set()

    def _code(self, node: cst.CSTNode) -> str:
        """Source text of a node, cached: libcst's code generation is the costliest call here."""
        key = id(node)
        text = self.engine.code_cache.get(key)
        if text is None:
            text = self.engine.code_cache[key] = self.parsed.code_of(node)
        return text

    def _short(self, node: cst.CSTNode) -> str:
        """``N.short`` of a node's code for messages; flattened from the source, no codegen."""
        return N.short(self.parsed.flat_code(node))

    # ----------------------------------------------------------------- statements
    def run(self) -> None:
        body = self.info.body()
        if self.info.node is None:
            body = [s for s in body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
        self._block(body)
        last_restore = max(self.discard_lines, default=0)
        for position, effect in enumerate(self.effects):
            if effect.kind is not EffectKind.UPDATE or effect.discarded:
                continue
            line = self.local_lines[position]
            if (effect.warmup and line < last_restore) or self._fresh_state_deleted(line, self.local_refs[position]):
                self.effects[position] = replace(effect, discarded=True)

    def _fresh_state_deleted(self, line: int, refs: set[str]) -> bool:
        """The update trained an object made here (``wl = BatchedLoRA(...)``, an optimizer) that
        is deleted afterwards (``del wl, wo``): its state cannot reach any later score."""
        if not self.deleted:
            return False
        closure = self.info.closure(refs)
        for deleted_line, names in self.deleted:
            trained = names & self.fresh_objects & closure
            if deleted_line <= line or not trained:
                continue
            used_meanwhile = any(
                effect.kind in _STATE_READERS
                and line < self.local_lines[i] < deleted_line
                and trained & self.info.closure(self.local_refs[i])
                for i, effect in enumerate(self.effects)
            ) or any(  # its weights copied out first: ``model.load_state_dict(… ft.state_dict() …)``
                line < read_line < deleted_line and name in trained for read_line, name in self.state_reads
            )
            if not used_meanwhile:
                return True
        return False

    def _block(self, statements: list[cst.CSTNode]) -> None:
        pushed = 0
        for statement in statements:
            self._statement(statement)
            if isinstance(statement, cst.If) and statement.orelse is None and ends_in_exit(statement.body):
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
            no_grad = any(
                N.last_part(N.callee_name(item.item)) in _NO_GRAD
                for item in node.items
                if isinstance(item.item, cst.Call)
            )
            self.warm_depth += warm
            self.no_grad_depth += no_grad
            self._block(list(node.body.body))
            self.no_grad_depth -= no_grad
            self.warm_depth -= warm
        elif isinstance(node, (cst.Try, cst.TryStar)):
            fed_before = set(self.train_fed)
            self.conditional_depth += 1
            self._block(list(node.body.body))
            for handler in node.handlers:
                self._block(list(handler.body.body))
            if node.orelse is not None:
                self._block(list(node.orelse.body.body))
            self.conditional_depth -= 1
            self.train_fed |= fed_before  # the body may have stopped before any rebinding
            if node.finalbody is not None:
                self._block(list(node.finalbody.body.body))
        elif isinstance(node, cst.Match):
            self._expr(node.subject)
            self.conditional_depth += 1
            fed_before = set(self.train_fed)
            for case in node.cases:
                self._block(list(case.body.body))
            self.train_fed |= fed_before
            self.conditional_depth -= 1

    def _if(self, node: cst.If) -> None:
        test_taint = self._expr(node.test)
        line = self.parsed.line_of(node)
        if test_taint is not None and test_taint.from_score:
            # ``else: bad_evals += 1`` under a test on a validation score: the counter now
            # carries that score's say over what happens next (patience-based early stopping)
            for name in _names_bound_in(node):
                self.score_controlled[name] = test_taint
        elif self.score_controlled:
            test_taint = next(
                (
                    self.score_controlled[N.root_part(r)]
                    for r in N.refs(node.test)
                    if N.root_part(r) in self.score_controlled
                ),
                test_taint,
            )
        if test_taint is not None and test_taint.from_score and _mentions_state_snapshot(node.body):
            self._emit(
                EffectKind.SELECTION,
                line,
                f"model state kept when `{self._short(node.test)}`",
                test_taint,
                set(N.refs(node.test)),
            )
        elif (
            test_taint is not None
            and test_taint.from_score
            and self.loops
            and _breaks_out(node.body)
            and _steps_optimizer(self.loops[-1].node)
        ):
            # early stopping on a validation score decides which step's weights are shipped
            self._emit(
                EffectKind.SELECTION,
                line,
                f"training stopped when `{self._short(node.test)}`",
                test_taint,
                set(N.refs(node.test)),
            )
        warm = _mentions_warm(node.test)
        self.warm_depth += warm
        self.conditional_depth += 1
        self.conds.append(Cond(self.parsed, node.test, True, line))
        fed_before = set(self.train_fed)
        self._block(list(node.body.body))
        fed_after_body = self.train_fed
        self.train_fed = set(fed_before)
        self.conds.pop()
        self.warm_depth -= warm
        if node.orelse is not None:
            self.conds.append(Cond(self.parsed, node.test, False, line))
            if isinstance(node.orelse, cst.If):
                self._if(node.orelse)
            else:
                self._block(list(node.orelse.body.body))
            self.conds.pop()
        self.train_fed |= fed_after_body  # either branch may have run
        self.conditional_depth -= 1

    def _loop(self, node: cst.For | cst.While) -> None:
        line = self.parsed.line_of(node)
        header = node.iter if isinstance(node, cst.For) else node.test
        header_taint = self._expr(header)
        uid = self.loop_uids.setdefault(id(node), next(call_sites))
        label = (
            "for " + self._short(node.target) + " in " + self._short(node.iter)
            if isinstance(node, cst.For)
            else "while " + self._short(node.test)
        )
        loop = Loop(node, uid, loop_vary(node), label, line)
        warm = bool(N.WARMUP_WORD.search(label))
        pushed_cond = False
        ranged = range_call(node.iter) if isinstance(node, cst.For) else None
        if ranged is not None and len(ranged.args) == 1:
            self.conds.append(Cond(self.parsed, ranged.args[0].value, True, line, range_count=True))
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
                if class_name is not None and (
                    class_name in self.engine.index.val_class_attrs
                    or self.engine.index.class_methods(class_name, self.info)
                ):
                    for target in node.targets:
                        if isinstance(target.target, cst.Name):
                            self.instances[target.target.value] = class_name
                if class_name in self.engine.index.val_data_classes and value is None:
                    value = Taint(
                        (
                            Step(
                                self.file,
                                line,
                                f"VAL source: {class_name}(…) (an instance holding loaded validation data)",
                            ),
                        )
                    )
            alias = wrapped_function(node.value, lambda n: self.engine.index.resolve(n, self.info))
            if alias is not None and alias is not self.info:
                for target in node.targets:
                    for name in N.assigned_names(target.target):
                        self.aliases[name] = alias
            if isinstance(node.value, cst.Call) and _constructs_state(node.value):
                for target in node.targets:
                    self.fresh_objects.update(N.assigned_names(target.target))
            for target in node.targets:
                self._accumulate_if_self_add(target.target, node.value, value, line)
                parts = self._parts_of(node.value, target.target)
                if parts is not None:
                    for element, part in zip(target.target.elements, parts):  # type: ignore[attr-defined]
                        self._bind(element.value, part, node.value)
                elif isinstance(node.value, cst.Dict) and isinstance(target.target, cst.Name):
                    self._bind_dict(target.target.value, node.value, value, line)
                else:
                    self._score_if_stored(target.target, node.value, value, line)
                    self._bind(target.target, value, node.value)
                    self._score_if_no_grad_forward(target.target, node.value, value, line)
            fields = self.call_fields.get(id(node.value))
            if fields:
                for target in node.targets:
                    holder = N.dotted_name(target.target)
                    if holder is None or holder.count(".") >= MAX_FIELD_DEPTH:
                        continue
                    for field_name, field_taint in fields.items():
                        self._taint_name(
                            f"{holder}.{field_name}",
                            field_taint,
                            line,
                            f"{holder}.{field_name} set by {N.callee_name(node.value)}(…)",
                        )  # type: ignore[arg-type]
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                self._bind(node.target, self._expr(node.value), node.value)
        elif isinstance(node, cst.AugAssign):
            self._augassign(node, line)
        elif isinstance(node, cst.Expr):
            self._expr(node.value)
        elif isinstance(node, cst.Return):
            if isinstance(node.value, cst.Tuple) and not any(
                isinstance(e, cst.StarredElement) for e in node.value.elements
            ):
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
                    self.returned = merge(
                        self.returned, value.extend(Step(self.file, line, f"returned from {self.info.display}"))
                    )
                    if N.SCORE_FUNCTION.search(self.info.name):
                        self._emit(
                            EffectKind.SCORE,
                            line,
                            f"score returned by {self.info.display}",
                            value,
                            set(N.refs(node.value)),
                        )
        elif isinstance(node, cst.Del):
            # what is deleted decides: a constructed LoRA/optimizer (see _fresh_state_deleted),
            # not the input tensors of a warm-up that trained the real model
            self.deleted.append((line, set(N.assigned_names(node.target))))
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
        if value is not None and isinstance(
            node.operator, (cst.AddAssign, cst.SubtractAssign, cst.MatrixMultiplyAssign)
        ):
            local_refs = set(N.refs(node.value))
            if not isinstance(node.operator, cst.SubtractAssign) and (
                N.contains_matmul(node.value) or isinstance(node.operator, cst.MatrixMultiplyAssign)
            ):
                self._emit(
                    EffectKind.CALIBRATION, line, f"activation statistics `{self._short(node)}`", value, local_refs
                )
                value = replace(value, via_calibration=True)
            elif (
                targets
                and self._is_score_target(targets[0])
                and not self._counts_only(node.value)
                and (not keyed_by_val or N.SCORE_LIST_NAME.search(N.last_part(targets[0])))
                and not self._reads_itself(targets[0], node.value)
            ):
                # ``doc_nll[doc_ids] += …`` is a per-document score; ``counts[key] += 1`` is a table
                self._emit(
                    EffectKind.SCORE,
                    line,
                    f"score accumulated into {targets[0]}",
                    value,
                    local_refs,
                    produced_from=local_refs - set(targets),
                )
                value = replace(value, from_score=True)
                for target in targets:
                    self.taint.pop(target, None)
        if value is not None:
            for target in targets:
                self._taint_name(
                    target, value, line, f"{target} {self._code(node.operator).strip()} {self._short(node.value)}"
                )

    def _parts_of(self, value_node: cst.BaseExpression, target: cst.BaseExpression) -> tuple[Taint | None, ...] | None:
        """Element-wise results for ``a, b = x, y`` and ``train, val = load_both()``: only the
        element that is validation data becomes VAL."""
        if not isinstance(target, (cst.Tuple, cst.List)) or any(
            isinstance(e, cst.StarredElement) for e in target.elements
        ):
            return None
        if (
            isinstance(value_node, (cst.Tuple, cst.List))
            and len(value_node.elements) == len(target.elements)
            and not any(isinstance(e, cst.StarredElement) for e in value_node.elements)
        ):
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

    # ---------------------------------------------------------------- bindings
    def _bind(self, target: cst.CSTNode, value: Taint | None, value_node: cst.CSTNode) -> None:
        line = self.parsed.line_of(target)
        keyed = literal_key(target) if isinstance(target, cst.Subscript) else None
        if keyed is not None:
            self.assigned_at[keyed] = self.clock
            if value is not None:
                self._taint_name(keyed, value, line, f"{keyed} = {self._short(value_node)}")
            return
        fed_by_training = self._reads_training_pipeline(value_node)
        ahead = value is not None and self._reads_ahead(value_node)
        for name in N.assigned_names(target):
            if ahead:
                self.ahead.add(name)
            elif self.conditional_depth == 0:
                self.ahead.discard(name)
            self.assigned_at[name] = self.clock
            self.assigned_within[name] = (tuple(self.loops), tuple(self.conds))
            if fed_by_training:
                self.train_fed.add(name)
            else:
                # rebinding ends the mark for what follows in this block; ``_if`` and ``try``
                # put back what another path may still hold (#672: ``x, y = train_loader…`` in
                # the training loop, then ``x = local[…]`` of val in a later ``if ttt_epochs:``)
                self.train_fed.discard(name)
            if value is not None:
                self._taint_name(name, value, line, f"{name} = {self._short(value_node)}")
            elif self.conditional_depth == 0 and not isinstance(target, cst.Subscript):
                self._kill(name)

    def _reads_ahead(self, value_node: cst.CSTNode) -> bool:
        """A later chunk of an enclosing chunk loop: sliced from ``(ci + 1) * n`` on, or computed
        from a name that holds one."""
        if any(N.root_part(r) in self.ahead for r in N.refs(value_node)):
            return True
        counters = {target for loop in self.loops for target in loop.targets}
        if not counters:
            return False
        stack: list[cst.CSTNode] = [value_node]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Subscript):
                for element in node.slice:
                    if (
                        isinstance(element.slice, cst.Slice)
                        and element.slice.lower is not None
                        and _offset_past(element.slice.lower, counters)
                    ):
                        return True
            stack.extend(N.children(node))
        return False

    def _reads_training_pipeline(self, value_node: cst.CSTNode) -> bool:
        for ref in N.refs(value_node):
            if ref in self.train_fed or N.root_part(ref) in self.train_fed:
                return True
            if any(N.TRAIN_PIPELINE_NAME.search(part) and not _BATCH_SETTING.search(part) for part in ref.split(".")):
                return True
        return False

    def _taint_name(self, name: str, value: Taint, line: int, note: str) -> None:
        self.assigned_at[name] = self.clock
        if name not in self.taint:
            self.taint[name] = value.extend(Step(self.file, line, note))

    def _kill(self, name: str) -> None:
        prefix = name + "."
        for key in [k for k in self.taint if k == name or k.startswith(prefix)]:
            del self.taint[key]

    # ------------------------------------------------------------- expressions
    def _frames(self, local_refs: set[str]) -> tuple[LoopFrame, ...]:
        closure = self.info.closure(local_refs) if self.loops else set()
        return tuple(
            LoopFrame(
                uid=(loop.uid,),
                targets=loop.targets,
                advancing=bool(closure & loop.vary),
                over_range=loop.over_range,
                label=loop.label,
                file=self.file,
                line=loop.line,
            )
            for loop in self.loops
        )

    def _with_production_context(
        self, loops: tuple[LoopFrame, ...], conds: tuple[Cond, ...], produced_from: set[str]
    ) -> tuple[tuple[LoopFrame, ...], tuple[Cond, ...]]:
        """A score accumulated after a loop from a value bound inside it (``doc_nll = ptl.sum()``
        in each epoch, ``loss_sum += doc_nll`` after the epochs) scores that loop's last pass
        (#568, #642): the loops it left, and the conditions of the binding, are the score's too."""
        active = {loop.uid for loop in self.loops}
        extra_loops: list[Loop] = []
        extra_conds: list[Cond] = []
        for ref in produced_from:
            within = self.assigned_within.get(N.root_part(ref))
            if within is None:
                continue
            for loop in within[0]:
                if loop.uid not in active and all(loop.uid != known.uid for known in extra_loops):
                    extra_loops.append(loop)
            extra_conds.extend(cond for cond in within[1] if cond not in conds and cond not in extra_conds)
        if not extra_loops:
            return loops, conds
        closure = self.info.closure(produced_from)
        left = tuple(
            LoopFrame(
                uid=(loop.uid,),
                targets=loop.targets,
                advancing=bool(closure & loop.vary),
                over_range=loop.over_range,
                label=loop.label,
                file=self.file,
                line=loop.line,
            )
            for loop in extra_loops
        )
        return loops + left, conds + tuple(extra_conds)

    def _emit(
        self,
        kind: EffectKind,
        line: int,
        note: str,
        taint: Taint | None,
        local_refs: set[str],
        produced_from: set[str] | None = None,
    ) -> None:
        """Record an effect. A score is placed where its value was *produced*: ``loss_sum +=
        ptl.sum()`` after ``backward()`` still scores the loss computed before the update."""
        if not self.emit:
            return
        loops, conds = self._frames(local_refs), tuple(self.conds)
        if taint is not None and taint.conds:
            conds += tuple(c for c in taint.conds if c not in conds)
        if kind is EffectKind.SCORE and produced_from:
            loops, conds = self._with_production_context(loops, conds, produced_from)
        effect = Effect(
            kind=kind,
            file=self.file,
            line=line,
            note=note,
            taint=taint,
            loops=loops,
            conds=conds,
            functions=(self.info.display,),
            function_ids=(self.info.uid,),
            warmup=self.warm_depth > 0,
            train_named=kind is EffectKind.UPDATE
            and taint is not None
            and any(N.root_part(r) in self.train_fed for r in local_refs),
            ahead=any(N.root_part(r) in self.ahead for r in local_refs),
        )
        if produced_from:
            produced = [
                self.assigned_at[N.root_part(r)]
                for r in produced_from
                if N.root_part(r) in self.assigned_at and self._lookup(r, None) is not None
            ]
            if produced:
                self._append(effect, line, at=max(produced) - 0.5, refs=local_refs)
                return
        self._append(effect, line, refs=local_refs)

    def _append(self, effect: Effect, line: int, at: float | None = None, refs: set[str] | None = None) -> None:
        refs = refs or set()
        if at is None or not self.ticks or at >= self.ticks[-1]:
            self.effects.append(effect)
            self.local_lines.append(line)
            self.local_refs.append(refs)
            self.ticks.append(float(self.clock) if at is None else at)
            self.clock += 1
            return
        position = next(i for i, tick in enumerate(self.ticks) if tick > at)
        self.effects.insert(position, effect)
        self.local_lines.insert(position, line)
        self.local_refs.insert(position, refs)
        self.ticks.insert(position, at)


def _mentions_warm(node: cst.CSTNode) -> bool:
    return any(N.WARMUP_WORD.search(name) for name in N.refs(node))


_NO_GRAD = frozenset({"no_grad", "inference_mode"})


_STATE_READERS = frozenset({EffectKind.SCORE, EffectKind.ARTIFACT, EffectKind.CALIBRATION})


def _constructs_state(call: cst.Call) -> bool:
    """``BatchedTTTLoRA(...)``, ``torch.optim.AdamW(...)``: a fresh object holding trainable state."""
    name = N.callee_name(call)
    last = N.last_part(name)
    return (last[:1].isupper() and not last.isupper()) or "optim" in name.lower() or last == "deepcopy"


def _offset_past(bound: cst.BaseExpression, counters: set[str]) -> bool:
    """``(ci + 1) * n``: a slice start one or more chunks past the loop counter's own chunk.
    Only a counter scaled by a chunk size counts: ``val[i + 1 : …]`` is the usual target shift
    of a window starting at token ``i``, not a later chunk."""
    stack: list[cst.CSTNode] = [bound]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
            if any(_counter_plus_constant(side, counters) for side in (node.left, node.right)):
                return True
        stack.extend(N.children(node))
    return False


def _counter_plus_constant(node: cst.BaseExpression, counters: set[str]) -> bool:
    if not isinstance(node, cst.BinaryOperation) or not isinstance(node.operator, cst.Add):
        return False
    sides = (node.left, node.right)
    return any(isinstance(a, cst.Name) and a.value in counters for a in sides) and any(
        isinstance(b, cst.Integer) and _positive(b.value) for b in sides
    )


def _positive(literal: str) -> bool:
    try:
        return int(literal, 0) > 0
    except ValueError:  # ``010``-style literals (not Python 3) never reach here from real code
        return False


def _names_bound_in(node: cst.If) -> set[str]:
    """Names assigned anywhere in an ``if`` statement's branches (nested defs aside)."""
    names: set[str] = set()
    stack: list[cst.CSTNode] = [node.body] + ([node.orelse] if node.orelse is not None else [])
    while stack:
        current = stack.pop()
        if isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        if isinstance(current, cst.Assign):
            for target in current.targets:
                names.update(N.root_part(name) for name in N.assigned_names(target.target))
        elif isinstance(current, cst.AugAssign):
            names.update(N.root_part(name) for name in N.assigned_names(current.target))
        stack.extend(N.children(current))
    return names


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


def _breaks_out(block: cst.BaseSuite) -> bool:
    """A ``break`` of the enclosing loop (not of a loop nested inside the ``if``)."""
    stack: list[cst.CSTNode] = [block]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Break):
            return True
        if isinstance(node, (cst.For, cst.While, cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        stack.extend(N.children(node))
    return False


def _steps_optimizer(loop: cst.For | cst.While) -> bool:
    """The broken loop is a training loop (it calls ``backward()``/``step()`` itself), not an
    evaluation loop that stops at a token budget or on a NaN."""
    stack: list[cst.CSTNode] = [loop.body]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Call) and N.last_part(N.callee_name(node)) in ("backward", "step"):
            return True
        stack.extend(N.children(node))
    return False


# ``args.train_batch_tokens`` sizes a batch; it is a setting, not training data
_BATCH_SETTING = re.compile(r"train_?batch_?(tokens|size|seqs)$", re.IGNORECASE)
