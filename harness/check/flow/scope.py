"""What one analysis of one function knows at the statement it has reached: which names hold
VAL and since when, the loops and conditions around the walk, and the effects recorded so far
in program order.

Why one object: the statement walk (``taint``), the expression and call taint (``calls``) and
the score sinks (``scores``) all read and change this state; each of them owns its own logic
and receives this object, so none has to declare attributes that another class provides.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.functions import FuncInfo, FunctionTable
from harness.check.flow.loops import Loop
from harness.check.flow.model import Cond, Effect, EffectKind, LoopFrame, Taint
from harness.check.tree.children import walk
from harness.findings import Step

call_sites = itertools.count(1)  # loop and call-site uids, unique across the walks of a run
MAX_FIELD_DEPTH = 3  # ``loader.stream.tokens``: how deep an object's VAL fields are followed


@dataclass
class Memos:
    """Per-submission results the walks share, keyed by node id or ``FuncInfo.uid``."""

    code: dict[int, str] = field(default_factory=dict)  # source text of a node
    read_outside_logs: dict[int, set[str]] = field(default_factory=dict)  # names read outside logs
    zero_started: dict[int, set[str]] = field(default_factory=dict)  # locals bound to a zero


class Scope:
    """The state of one function walk, with the operations that bind names and record effects."""

    def __init__(self, index: FunctionTable, memos: Memos, info: FuncInfo, taint: dict[str, Taint]) -> None:
        self.index = index
        self.memos = memos
        self.info = info
        self.parsed = info.parsed
        self.file = info.file
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

    def code(self, node: cst.CSTNode) -> str:
        """Source text of a node, cached: libcst's code generation is the costliest call here."""
        key = id(node)
        text = self.memos.code.get(key)
        if text is None:
            text = self.memos.code[key] = self.parsed.code_of(node)
        return text

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
        for ref in N.refs(value_node):
            if ref in self.train_fed or N.root_part(ref) in self.train_fed:
                return True
            if any(N.TRAIN_PIPELINE_NAME.search(part) and not _BATCH_SETTING.search(part) for part in ref.split(".")):
                return True
        return False

    def taint_name(self, name: str, value: Taint, line: int, note: str) -> None:
        self.assigned_at[name] = self.clock
        if name not in self.taint:
            self.taint[name] = value.extend(Step(self.file, line, note))

    def kill(self, name: str) -> None:
        prefix = name + "."
        for key in [k for k in self.taint if k == name or k.startswith(prefix)]:
            del self.taint[key]

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
        return loops + self.frames(produced_from, extra_loops), conds + tuple(extra_conds)

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
        if produced_from:
            produced = [
                self.assigned_at[N.root_part(r)]
                for r in produced_from
                if N.root_part(r) in self.assigned_at and self.lookup(r, None) is not None
            ]
            if produced:
                self.append(effect, line, at=max(produced) - 0.5, refs=local_refs)
                return
        self.append(effect, line, refs=local_refs)

    def append(self, effect: Effect, line: int, at: float | None = None, refs: set[str] | None = None) -> None:
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
        isinstance(b, cst.Integer) and _positive(b.value) for b in sides
    )


def _positive(literal: str) -> bool:
    try:
        return int(literal, 0) > 0
    except ValueError:  # ``010``-style literals (not Python 3) never reach here from real code
        return False


# ``args.train_batch_tokens`` sizes a batch; it is a setting, not training data
_BATCH_SETTING = re.compile(r"train_?batch_?(tokens|size|seqs)$", re.IGNORECASE)
