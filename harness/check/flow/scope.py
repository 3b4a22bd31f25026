"""What one analysis of one function knows at the statement it has reached: which names hold
VAL and since when, the loops and conditions around it, the effects so far in program order.
One object that the statement walk (``taint``), the call taint (``calls``) and the score sinks
(``scores``) all read and change, so none declares attributes that another provides.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.loops import Loop
from harness.check.flow.model import Cond, Effect, EffectKind, LoopFrame, Taint
from harness.check.tree.children import walk
from harness.check.tree.nodes import number_value
from harness.findings import Step

call_sites = itertools.count(1)  # loop and call-site uids, unique across the walks of a run
MAX_FIELD_DEPTH = 3  # ``loader.stream.tokens``: how deep an object's VAL fields are followed


BodyFact = Callable[[list[cst.CSTNode]], set[str]]
Memos = dict[tuple[BodyFact, int], set[str]]  # a fact of a function body (by ``FuncInfo.uid``), per submission


class Scope:
    """The state of one function walk, with the operations that bind names and record effects."""

    def __init__(self, index: FunctionTable, memos: Memos, info: FuncInfo, taint: dict[str, Taint]) -> None:
        self.index = index
        self.memos = memos
        self.info, self.parsed, self.file = info, info.parsed, info.file
        self.taint = taint
        self.effects: list[Effect] = []
        self.local_lines: list[int] = []  # line in this function that produced effects[i]
        self.local_refs: list[set[str]] = []  # names each effect's local statement read
        self.ticks: list[float] = []  # when effects[i] happened, in this walk's program order
        self.clock = 0
        self.assigned_at: dict[str, int] = {}  # name -> clock when it was last bound
        # name -> (loops, conditions) around its last binding: a score read after a loop from a
        # name bound inside it was produced by that loop's last iteration
        self.assigned_within: dict[str, tuple[tuple[Loop, ...], tuple[Cond, ...]]] = {}
        self.returned: Taint | None = None
        self.returned_parts: tuple[Taint | None, ...] | None = None
        self.tuple_returns_only = True
        self.loops: list[Loop] = []
        self.conds: list[Cond] = []
        self.recording = True  # off on a loop's first pass and while re-reading an evaluated value
        self.warm_depth = 1 if N.WARMUP_WORD.search(info.name) else 0
        self.conditional_depth = 0
        self.no_grad_depth = 0
        self.discard_lines: list[int] = []  # lines restoring a saved state (load_state_dict)
        self.ahead: set[str] = set()  # names holding a later chunk than the loop's current one
        self.state_reads: list[tuple[int, str]] = []  # (line, object) whose weights are read out
        self.instances: dict[str, str] = {}  # local name -> submission class it was built from
        # names bound (directly or through other bindings) from the training-data pipeline: an
        # update reading one of them *and* VAL mixes validation batches into training steps
        self.train_fed: set[str] = set()

    def per_function(self, fact: BodyFact) -> set[str]:
        """``fact`` of this function's body, computed once per submission."""
        key = (fact, self.info.uid)
        if key not in self.memos:
            self.memos[key] = fact(self.info.body())
        return self.memos[key]

    def short(self, node: cst.CSTNode) -> str:
        """``N.short`` of a node's code for messages; flattened from the source, no codegen."""
        return N.short(self.parsed.flat_code(node))

    def lookup(self, dotted: str, node: cst.CSTNode | None) -> Taint | None:
        """VAL held by ``dotted`` (or by an object it is a field of), a validation name, or a
        field of a submission class that holds a validation path."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.taint.get(".".join(parts[:end]))
            if found is not None:
                return found
        what = dotted if N.is_val_name(dotted) else None
        if what is None and len(parts) == 2:
            class_name = self.instances.get(parts[0], parts[0])
            if parts[1] in self.index.val_class_attrs.get(class_name, {}):
                what = f"{dotted} (field {class_name}.{parts[1]} holds a validation path)"
        if what is None:
            return None
        return self.source(self.parsed.line_of(node) if node is not None else 0, what)

    def source(self, line: int, what: str) -> Taint:
        """Validation data entering the walk here: the first step of a path."""
        return Taint((Step(self.file, line, f"VAL source: {what}"),))

    def bind(self, target: cst.CSTNode, value: Taint | None, value_node: cst.CSTNode) -> None:
        line = self.parsed.line_of(target)
        keyed = literal_key(target) if isinstance(target, cst.Subscript) else None
        if keyed is not None:
            self.assigned_at[keyed] = self.clock
            if value is not None:
                self.taint_name(keyed, value, line, f"{keyed} = {self.short(value_node)}")
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
                self.taint_name(name, value, line, f"{name} = {self.short(value_node)}")
            elif self.conditional_depth == 0 and not isinstance(target, cst.Subscript):
                self.kill(name)

    def _reads_ahead(self, value_node: cst.CSTNode) -> bool:
        """A later chunk of an enclosing chunk loop: sliced from ``(ci + 1) * n`` on, or computed
        from a name that holds one."""
        if any(N.root_part(r) in self.ahead for r in N.refs(value_node)):
            return True
        counters = {target for loop in self.loops for target in loop.targets}
        if not counters:
            return False
        return any(
            isinstance(element.slice, cst.Slice)
            and element.slice.lower is not None
            and _offset_past(element.slice.lower, counters)
            for node in walk(value_node)
            if isinstance(node, cst.Subscript)
            for element in node.slice
        )

    def _reads_training_pipeline(self, value_node: cst.CSTNode) -> bool:
        return any(
            ref in self.train_fed
            or N.root_part(ref) in self.train_fed
            or any(N.TRAIN_PIPELINE_NAME.search(part) and not _BATCH_SETTING.search(part) for part in ref.split("."))
            for ref in N.refs(value_node)
        )

    def taint_name(self, name: str, value: Taint, line: int, note: str) -> None:
        self.assigned_at[name] = self.clock
        if name not in self.taint:
            self.taint[name] = value.extend(Step(self.file, line, note))

    def kill(self, name: str) -> None:
        prefix = name + "."
        for key in [k for k in self.taint if k == name or k.startswith(prefix)]:
            del self.taint[key]

    def fields_of(self, holder: str) -> dict[str, Taint]:
        """VAL fields of the object ``holder`` names, nested ones included: ``stream.tokens`` of
        ``calib_loader``, or ``self.stream.tokens`` an ``__init__`` stored (#728)."""
        prefix = holder + "."
        return {
            key[len(prefix) :]: value
            for key, value in self.taint.items()
            if key.startswith(prefix) and key.count(".", len(prefix)) < MAX_FIELD_DEPTH
        }

    def enter_comprehension(self, names: set[str]) -> Callable[[], None]:
        """Save what this function binds to ``names`` before a comprehension binds them in its
        own scope; the function returned drops the comprehension's bindings and puts these back."""
        taint = {key: value for key, value in self.taint.items() if key in names or key.split(".", 1)[0] in names}
        assigned_at = {n: self.assigned_at[n] for n in names if n in self.assigned_at}
        within = {n: self.assigned_within[n] for n in names if n in self.assigned_within}
        train_fed, ahead = names & self.train_fed, names & self.ahead

        def restore() -> None:
            for name in names:
                self.kill(name)
                self.assigned_at.pop(name, None)
                self.assigned_within.pop(name, None)
            self.taint.update(taint)
            self.assigned_at.update(assigned_at)
            self.assigned_within.update(within)
            self.train_fed -= names
            self.train_fed |= train_fed
            self.ahead -= names
            self.ahead |= ahead

        return restore

    def frames(self, refs: set[str], loops: list[Loop] | None = None) -> tuple[LoopFrame, ...]:
        """``loops`` (the ones around the walk by default) as an effect reading ``refs`` sees
        them: advancing where those names change from one iteration to the next."""
        loops = self.loops if loops is None else loops
        closure = self.info.closure(refs) if loops else set()
        return tuple(
            LoopFrame(
                (loop.uid,), loop.targets, bool(closure & loop.vary), loop.over_range, loop.label, self.file, loop.line
            )
            for loop in loops
        )

    def _with_production_context(
        self, loops: tuple[LoopFrame, ...], conds: tuple[Cond, ...], produced_from: set[str]
    ) -> tuple[tuple[LoopFrame, ...], tuple[Cond, ...]]:
        """A score accumulated after a loop from a value bound inside it (``doc_nll = ptl.sum()``
        in each epoch, ``loss_sum += doc_nll`` after the epochs) scores that loop's last pass
        (#568, #642): the loops it left, and the conditions of the binding, are the score's too."""
        active = {loop.uid for loop in self.loops}
        extra_loops: dict[int, Loop] = {}
        extra_conds: list[Cond] = []
        for ref in produced_from:
            left, within = self.assigned_within.get(N.root_part(ref), ((), ()))
            for loop in left:
                if loop.uid not in active:
                    extra_loops.setdefault(loop.uid, loop)
            extra_conds.extend(cond for cond in within if cond not in conds and cond not in extra_conds)
        if not extra_loops:
            return loops, conds
        return loops + self.frames(produced_from, list(extra_loops.values())), conds + tuple(extra_conds)

    def emit(
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
        if not self.recording:
            return
        loops, conds = self.frames(local_refs), tuple(self.conds)
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
        produced = [
            self.assigned_at[N.root_part(r)]
            for r in produced_from or ()
            if N.root_part(r) in self.assigned_at and self.lookup(r, None) is not None
        ]
        self.append(effect, line, local_refs, at=max(produced) - 0.5 if produced else None)

    def append(self, effect: Effect, line: int, refs: set[str], at: float | None = None) -> None:
        """Record ``effect`` now, or at tick ``at``: before the effects recorded since then."""
        tick = float(self.clock) if at is None else at
        if not self.ticks or tick >= self.ticks[-1]:
            self.clock += 1
        position = bisect.bisect_right(self.ticks, tick)
        self.effects.insert(position, effect)
        self.local_lines.insert(position, line)
        self.local_refs.insert(position, refs)
        self.ticks.insert(position, tick)


def literal_key(node: cst.Subscript) -> str | None:
    """``state["val_tokens"]`` → ``state.val_tokens``: literal keys are tracked like fields."""
    base = N.dotted_name(node.value)
    if base is None or len(node.slice) != 1:
        return None
    index = node.slice[0].slice
    if not isinstance(index, cst.Index) or not isinstance(index.value, cst.SimpleString):
        return None
    key = N.string_value(index.value)
    return f"{base}.{key}" if key is not None and key.isidentifier() else None


def _offset_past(bound: cst.BaseExpression, counters: set[str]) -> bool:
    """``(ci + 1) * n``: a slice start one or more chunks past the loop counter's own chunk.
    Only a counter scaled by a chunk size counts: ``val[i + 1 : …]`` is the usual target shift
    of a window starting at token ``i``, not a later chunk."""
    return any(
        isinstance(node, cst.BinaryOperation)
        and isinstance(node.operator, cst.Multiply)
        and any(_counter_plus_constant(side, counters) for side in (node.left, node.right))
        for node in walk(bound)
    )


def _counter_plus_constant(node: cst.BaseExpression, counters: set[str]) -> bool:
    if not isinstance(node, cst.BinaryOperation) or not isinstance(node.operator, cst.Add):
        return False
    sides = (node.left, node.right)
    return any(isinstance(a, cst.Name) and a.value in counters for a in sides) and any(
        isinstance(b, cst.Integer) and (number_value(b) or 0) > 0 for b in sides
    )


# ``args.train_batch_tokens`` sizes a batch; it is a setting, not training data
_BATCH_SETTING = re.compile(r"train_?batch_?(tokens|size|seqs)$", re.IGNORECASE)
