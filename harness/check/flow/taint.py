"""Taint propagation over the submission's functions into the ordered effect timeline: an
abstract walk rather than a fixpoint over an IR, because the rules need statement order inside
loops (score before update, per chunk) and every sink's loops and conditions across calls. Loop
bodies are walked twice for loop-carried taint; callees are analysed once per set of tainted
parameters (memoized) and inlined at the call site. Nothing is executed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.calls import Calls, wrapped_function
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.loops import Loop, ends_in_exit, loop_vary, own_statements, range_call
from harness.check.flow.model import Cond, Effect, EffectKind, Summary, Taint, merge
from harness.check.flow.scope import MAX_FIELD_DEPTH, Memos, Scope, call_sites
from harness.check.flow.scores import ScoreSinks
from harness.check.tree.children import walk
from harness.check.tree.nodes import assign_targets, call_tail
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
        self.memos: Memos = {}

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
            walk.scope.instances.update(classes or {})
            walk.run()
        finally:
            self.stack.pop()
        done = walk.scope
        returned = done.returned
        if returned is not None and any(e.kind is EffectKind.CALIBRATION and e.tainted for e in done.effects):
            returned = replace(returned, via_calibration=True)
        if returned is not None and any(e.kind is EffectKind.SCORE and e.tainted for e in done.effects):
            returned = replace(returned, from_score=True)
        summary = Summary(
            effects=done.effects,
            returned=returned,
            returned_parts=done.returned_parts if done.tuple_returns_only else None,
            tainted_params={p: done.taint[p] for p in info.params if p in done.taint and p not in seed},
            self_fields=done.fields_of(info.params[0]) if info.class_name is not None and info.params else {},
        )
        self.memo[key] = summary
        return summary

    def timeline(self, info: FuncInfo) -> list[Effect]:
        summary = self.analyze(info, {})
        effects = summary.effects if summary is not None else []
        return [replace(effect, order=position) for position, effect in enumerate(effects)]


class _Walk:
    """One analysis of one function under one set of tainted names: its statements, in order."""

    def __init__(self, engine: Engine, info: FuncInfo, taint: dict[str, Taint]) -> None:
        self.info, self.parsed, self.file = info, info.parsed, info.file
        self.scope = Scope(engine.index, engine.memos, info, taint)
        self.scores = ScoreSinks(self.scope)
        self.calls = Calls(self.scope, self.scores, engine.analyze)
        self.score_controlled: dict[str, Taint] = {}  # names bound under a test on a VAL score
        self.deleted: list[tuple[int, set[str]]] = []  # (line, names) of ``del`` statements
        self.fresh_objects: set[str] = set()  # names bound to a constructed module/optimizer
        self.loop_uids: dict[int, int] = {}

    def run(self) -> None:
        self._block(self.info.body())  # a def or class statement is not walked: it runs when called
        last_restore = max(self.scope.discard_lines, default=0)
        for position, effect in enumerate(self.scope.effects):
            if effect.kind is not EffectKind.UPDATE or effect.discarded:
                continue
            line = self.scope.local_lines[position]
            if (effect.warmup and line < last_restore) or self._fresh_state_deleted(
                line, self.scope.local_refs[position]
            ):
                self.scope.effects[position] = replace(effect, discarded=True)

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
                and line < self.scope.local_lines[i] < deleted_line
                and trained & self.info.closure(self.scope.local_refs[i])
                for i, effect in enumerate(self.scope.effects)
            ) or any(  # its weights copied out first: ``model.load_state_dict(… ft.state_dict() …)``
                line < read_line < deleted_line and name in trained for read_line, name in self.scope.state_reads
            )
            if not used_meanwhile:
                return True
        return False

    def _block(self, statements: Sequence[cst.CSTNode]) -> None:
        depth = len(self.scope.conds)
        for statement in statements:
            self._statement(statement)
            if isinstance(statement, cst.If) and statement.orelse is None and ends_in_exit(statement.body):
                # a guard: what follows it runs only when its test is false
                self.scope.conds.append(Cond(self.parsed, statement.test, False, self.parsed.line_of(statement)))
        del self.scope.conds[depth:]

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
                value = self.calls.expr(item.item)
                if item.asname is not None:
                    self.scope.bind(item.asname.name, value, item.item)
            managers = {call_tail(item.item) for item in node.items if isinstance(item.item, cst.Call)}
            no_grad = bool(managers & _NO_GRAD)
            self.scope.warm_depth += warm
            self.scope.no_grad_depth += no_grad
            self._block(node.body.body)
            self.scope.no_grad_depth -= no_grad
            self.scope.warm_depth -= warm
        elif isinstance(node, (cst.Try, cst.TryStar)):
            orelse = [node.orelse.body] if node.orelse is not None else []
            self._branches([node.body, *(handler.body for handler in node.handlers), *orelse])
            if node.finalbody is not None:
                self._block(node.finalbody.body.body)
        elif isinstance(node, cst.Match):
            self.calls.expr(node.subject)
            self._branches([case.body for case in node.cases])

    def _branches(self, blocks: list[cst.BaseSuite]) -> None:
        """The blocks of a ``try`` or ``match``: any may run, or stop before rebinding a name."""
        fed_before = set(self.scope.train_fed)
        self.scope.conditional_depth += 1
        for block in blocks:
            self._block(block.body)
        self.scope.conditional_depth -= 1
        self.scope.train_fed |= fed_before

    def _if(self, node: cst.If) -> None:
        test_taint = self.calls.expr(node.test)
        line = self.parsed.line_of(node)
        if test_taint is not None and test_taint.from_score:
            # ``else: bad_evals += 1`` under a test on a validation score: the counter now
            # carries that score's say over what happens next (patience-based early stopping)
            for name in _names_bound_in(node):
                self.score_controlled[name] = test_taint
        elif self.score_controlled:
            roots = [N.root_part(r) for r in N.refs(node.test) if N.root_part(r) in self.score_controlled]
            test_taint = self.score_controlled[roots[0]] if roots else test_taint
        if test_taint is not None and test_taint.from_score:
            selection = None
            if _methods_called(node.body) & N.STATE_SNAPSHOT_CALLS:
                selection = "model state kept"
            elif (
                self.scope.loops
                and _breaks_out(node.body)
                and {"backward", "step"} & _methods_called(self.scope.loops[-1].node.body)
            ):
                # early stopping of a training loop (not an eval loop's token budget or NaN stop) picks the shipped step
                selection = "training stopped"
            if selection is not None:
                note = f"{selection} when `{self.scope.short(node.test)}`"
                self.scope.emit(EffectKind.SELECTION, line, note, test_taint, set(N.refs(node.test)))
        warm = _mentions_warm(node.test)
        self.scope.warm_depth += warm
        self.scope.conditional_depth += 1
        self.scope.conds.append(Cond(self.parsed, node.test, True, line))
        fed_before = set(self.scope.train_fed)
        self._block(node.body.body)
        fed_after_body = self.scope.train_fed
        self.scope.train_fed = set(fed_before)
        self.scope.conds.pop()
        self.scope.warm_depth -= warm
        if node.orelse is not None:
            self.scope.conds.append(Cond(self.parsed, node.test, False, line))
            if isinstance(node.orelse, cst.If):
                self._if(node.orelse)
            else:
                self._block(node.orelse.body.body)
            self.scope.conds.pop()
        self.scope.train_fed |= fed_after_body  # either branch may have run
        self.scope.conditional_depth -= 1

    def _loop(self, node: cst.For | cst.While) -> None:
        line = self.parsed.line_of(node)
        header = node.iter if isinstance(node, cst.For) else node.test
        header_taint = self.calls.expr(header)
        uid = self.loop_uids.setdefault(id(node), next(call_sites))
        label = (
            "for " + self.scope.short(node.target) + " in " + self.scope.short(node.iter)
            if isinstance(node, cst.For)
            else "while " + self.scope.short(node.test)
        )
        loop = Loop(node, uid, loop_vary(node), label, line)
        warm = bool(N.WARMUP_WORD.search(label))
        depth = len(self.scope.conds)
        ranged = range_call(node.iter) if isinstance(node, cst.For) else None
        if ranged is not None and len(ranged.args) == 1:
            self.scope.conds.append(Cond(self.parsed, ranged.args[0].value, True, line, range_count=True))
        self.scope.loops.append(loop)
        self.scope.warm_depth += warm
        outer = self.scope.recording
        for recording in (False, True) if outer else (False,):  # the first pass carries taint around
            self.scope.recording = recording
            if isinstance(node, cst.For):
                self.scope.bind(node.target, header_taint, node.iter)
            self._block(node.body.body)
        self.scope.recording = outer
        self.scope.warm_depth -= warm
        self.scope.loops.pop()
        del self.scope.conds[depth:]
        if node.orelse is not None:
            self._block(node.orelse.body.body)

    def _small(self, node: cst.BaseSmallStatement) -> None:
        line = self.parsed.line_of(node)
        if isinstance(node, cst.Assign):
            self._assign(node, line)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                self.scope.bind(node.target, self.calls.expr(node.value), node.value)
        elif isinstance(node, cst.AugAssign):
            self._augassign(node, line)
        elif isinstance(node, cst.Expr):
            self.calls.expr(node.value)
        elif isinstance(node, cst.Return):
            if isinstance(node.value, cst.Tuple) and not any(
                isinstance(e, cst.StarredElement) for e in node.value.elements
            ):
                parts = tuple(self.calls.expr(e.value) for e in node.value.elements)
                if self.scope.returned_parts is None:
                    self.scope.returned_parts = parts
                elif len(self.scope.returned_parts) == len(parts):
                    self.scope.returned_parts = tuple(merge(a, b) for a, b in zip(self.scope.returned_parts, parts))
                else:
                    self.scope.tuple_returns_only = False
            else:
                self.scope.tuple_returns_only = False
            if node.value is not None:
                value = self.calls.expr(node.value)
                if value is not None:
                    self.scope.returned = merge(
                        self.scope.returned, value.extend(Step(self.file, line, f"returned from {self.info.display}"))
                    )
                    if N.SCORE_FUNCTION.search(self.info.name):
                        note = f"score returned by {self.info.display}"
                        self.scope.emit(EffectKind.SCORE, line, note, value, set(N.refs(node.value)))
        elif isinstance(node, cst.Del):
            # what is deleted decides: a constructed LoRA/optimizer (see _fresh_state_deleted),
            # not the input tensors of a warm-up that trained the real model
            self.deleted.append((line, set(N.assigned_names(node.target))))
        elif isinstance(node, cst.Raise) and node.exc is not None:
            self.calls.expr(node.exc)

    def _assign(self, node: cst.Assign, line: int) -> None:
        value = self.calls.expr(node.value)
        call = node.value if isinstance(node.value, cst.Call) else None
        class_name = N.dotted_name(call.func) if call is not None else None
        index = self.scope.index
        if class_name in index.val_data_classes and value is None:
            value = self.scope.source(line, f"{class_name}(…) (an instance holding loaded validation data)")
        known_class = class_name is not None and (
            class_name in index.val_class_attrs or bool(index.class_methods(class_name, self.info))
        )
        alias = wrapped_function(node.value, lambda n: index.resolve(n, self.info))
        fresh = call is not None and _constructs_state(call)
        fields = self.calls.call_fields.get(id(call), {}) if call is not None else {}
        for target in (t.target for t in node.targets):
            names = N.assigned_names(target)
            if known_class and class_name is not None and isinstance(target, cst.Name):
                self.scope.instances[target.value] = class_name
            if alias is not None and alias is not self.info:
                self.calls.aliases.update(dict.fromkeys(names, alias))
            if fresh:
                self.fresh_objects.update(names)
            self.scores.accumulate_if_self_add(target, node.value, value, line)
            parts = self._parts_of(node.value, target)
            if parts is not None and isinstance(target, (cst.Tuple, cst.List)):
                for element, part in zip(target.elements, parts):
                    self.scope.bind(element.value, part, node.value)
            elif isinstance(node.value, cst.Dict) and isinstance(target, cst.Name):
                self._bind_dict(target.value, node.value, value, line)
            else:
                self.scores.score_if_stored(target, node.value, value, line)
                self.scope.bind(target, value, node.value)
                self.scores.score_if_no_grad_forward(target, node.value, value, line)
            holder = N.dotted_name(target)
            if call is not None and holder is not None and holder.count(".") < MAX_FIELD_DEPTH:
                for field_name, field_taint in fields.items():
                    note = f"{holder}.{field_name} set by {N.callee_name(call)}(…)"
                    self.scope.taint_name(f"{holder}.{field_name}", field_taint, line, note)

    def _augassign(self, node: cst.AugAssign, line: int) -> None:
        value = self.calls.expr(node.value)
        targets = N.assigned_names(node.target)
        keyed_by_val = False
        if isinstance(node.target, cst.Subscript):
            index_taint = self.calls.expr(node.target.slice[0]) if node.target.slice else None
            keyed_by_val = index_taint is not None
            value = merge(value, index_taint)
        if value is not None and isinstance(
            node.operator, (cst.AddAssign, cst.SubtractAssign, cst.MatrixMultiplyAssign)
        ):
            if not isinstance(node.operator, cst.SubtractAssign) and (
                N.contains_matmul(node.value) or isinstance(node.operator, cst.MatrixMultiplyAssign)
            ):
                note = f"activation statistics `{self.scope.short(node)}`"
                self.scope.emit(EffectKind.CALIBRATION, line, note, value, set(N.refs(node.value)))
                value = replace(value, via_calibration=True)
            elif (
                targets
                and self.scores.is_score_target(targets[0])
                and not self.scores.counts_only(node.value)
                and (not keyed_by_val or N.SCORE_LIST_NAME.search(N.last_part(targets[0])))
                and not self.scores.reads_itself(targets[0], node.value)
            ):
                # ``doc_nll[doc_ids] += …`` is a per-document score; ``counts[key] += 1`` is a table
                self.scores.accumulated(targets[0], line, value, node.value)
                value = replace(value, from_score=True)
                for target in targets:
                    self.scope.taint.pop(target, None)
        if value is not None:
            for target in targets:
                note = f"{target} {self.parsed.flat_code(node.operator)} {self.scope.short(node.value)}"
                self.scope.taint_name(target, value, line, note)

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
        parts = self.calls.call_parts.get(id(value_node))
        if parts is not None and len(parts) == len(target.elements):
            return parts
        return None

    def _lookup_only(self, node: cst.BaseExpression) -> Taint | None:
        """Taint of an already-evaluated element, without emitting its effects again."""
        saved = self.scope.recording
        self.scope.recording = False
        try:
            return self.calls.expr(node)
        finally:
            self.scope.recording = saved

    def _bind_dict(self, name: str, value_node: cst.Dict, value: Taint | None, line: int) -> None:
        """``data = {"train": tr, "val": va}``: keys with literal names are tracked one by one."""
        keyed: dict[str, Taint | None] = {}
        for element in value_node.elements:
            key = N.string_value(element.key) if isinstance(element, cst.DictElement) else None
            if key is None or not key.isidentifier():
                self.scope.bind(cst.Name(name), value, value_node)
                return
            keyed[key] = self._lookup_only(element.value)
        self.scope.assigned_at[name] = self.scope.clock
        if self.scope.conditional_depth == 0:
            self.scope.kill(name)
        for key, taint in keyed.items():
            if taint is not None:
                self.scope.taint_name(f"{name}.{key}", taint, line, f"{name}[{key!r}] = …")


def _mentions_warm(node: cst.CSTNode) -> bool:
    return any(N.WARMUP_WORD.search(name) for name in N.refs(node))


_NO_GRAD = frozenset({"no_grad", "inference_mode"})
_STATE_READERS = frozenset({EffectKind.SCORE, EffectKind.ARTIFACT, EffectKind.CALIBRATION})


def _constructs_state(call: cst.Call) -> bool:
    """``BatchedTTTLoRA(...)``, ``torch.optim.AdamW(...)``: a fresh object holding trainable state."""
    name = N.callee_name(call)
    last = N.last_part(name)
    return (last[:1].isupper() and not last.isupper()) or "optim" in name.lower() or last == "deepcopy"


def _names_bound_in(node: cst.If) -> set[str]:
    """Names assigned anywhere in an ``if`` statement's branches (nested defs aside)."""
    return {
        N.root_part(name)
        for statement in own_statements([node])
        if isinstance(statement, (cst.Assign, cst.AugAssign))
        for target in assign_targets(statement)
        for name in N.assigned_names(target)
    }


def _methods_called(block: cst.BaseSuite) -> set[str]:
    return {call_tail(node) for node in walk(block) if isinstance(node, cst.Call)}


def _breaks_out(block: cst.BaseSuite) -> bool:
    """A ``break`` of the enclosing loop (not of a loop nested inside the ``if``)."""
    return any(isinstance(statement, cst.Break) for statement in own_statements([block], into_loops=False))
