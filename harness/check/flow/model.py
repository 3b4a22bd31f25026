"""Value types of the data-flow engine: taint with its evidence path, loop frames, conditions,
and the effects that the ordering rules read.

Why a flat timeline of effects: the rules are about *order* (was this chunk scored before it was
trained on, was the model serialized after the training), so every effect is recorded once, in
program order, with the loops and conditions around it across the whole call chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

import libcst as cst

from harness.check.parse import ParsedSource
from harness.findings import Step

MAX_PATH_STEPS = 10


@dataclass(frozen=True)
class Taint:
    """A value derived from validation data, with the steps that show how."""

    path: tuple[Step, ...]
    via_calibration: bool = False
    from_score: bool = False  # a score (loss/bpb) computed on VAL, not the tokens themselves
    # tests that must hold for the value to be VAL at all: ``args.val_files if args.train_on_val
    # else args.train_files`` is VAL only when TRAIN_ON_VAL is on (wild #181), so every effect it
    # reaches carries that condition for the documented-configuration check
    conds: tuple[Cond, ...] = ()

    def extend(self, step: Step) -> Taint:
        if self.path and self.path[-1] == step:
            return self
        path = self.path + (step,)
        if len(path) > MAX_PATH_STEPS:
            path = path[:3] + path[-(MAX_PATH_STEPS - 3) :]
        return replace(self, path=path)


def merge(first: Taint | None, second: Taint | None) -> Taint | None:
    if first is None:
        return second
    if second is None:
        return first
    if first.conds and not second.conds:
        first = replace(first, conds=())  # VAL without conditions on one side: VAL regardless
    via_calibration, from_score = first.via_calibration or second.via_calibration, first.from_score or second.from_score
    if via_calibration != first.via_calibration or from_score != first.from_score:
        return replace(first, via_calibration=via_calibration, from_score=from_score)
    return first


class EffectKind(str, Enum):
    UPDATE = "update"  # backward / autograd.grad / in-place parameter write
    SCORE = "score"  # accumulation into the reported loss / bpb
    ARTIFACT = "artifact"  # serialization / quantization / compression of the model
    CALIBRATION = "calibration"  # Hessian / activation statistics for quantization
    SELECTION = "selection"  # model state kept or saved because of a VAL-derived test


@dataclass(frozen=True)
class LoopFrame:
    """One enclosing loop *instance* in the call chain (a helper called from two places has two).
    ``advancing``: the effect's data changes per iteration (a chunk loop), not an epoch loop."""

    uid: tuple[int, ...]
    targets: tuple[str, ...]
    advancing: bool
    over_range: bool
    label: str
    file: str
    line: int


@dataclass(frozen=True)
class Cond:
    """A condition that must hold for an effect to run (``want`` is the required truth)."""

    parsed: ParsedSource
    expr: cst.BaseExpression
    want: bool
    line: int
    range_count: bool = False  # ``for _ in range(expr)``: runs only when expr > 0
    # parameter → argument expression, one level per call the condition was lifted through
    # (innermost first), so ``if run_ttt:`` inside a helper reads the caller's ``h.ttt_enabled``
    scope: tuple[tuple[tuple[str, cst.BaseExpression], ...], ...] = ()


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    file: str
    line: int
    note: str
    taint: Taint | None
    loops: tuple[LoopFrame, ...] = ()
    conds: tuple[Cond, ...] = ()
    functions: tuple[str, ...] = ()  # call chain, outermost first
    function_ids: tuple[int, ...] = ()  # FuncInfo uids of that chain
    calls: tuple[Step, ...] = ()  # call sites leading to the effect, outermost first
    call_names: tuple[frozenset[str], ...] = ()  # names read by each of those call sites
    warmup: bool = False  # inside a block named for warm-up
    discarded: bool = False  # the updated state is deleted or restored afterwards
    train_named: bool = False  # VAL reached it through a name of the training pipeline
    ahead: bool = False  # its data is a later chunk of the loop (``val[(ci + 1) * n : …]``)
    order: int = 0  # position in the root's timeline

    @property
    def tainted(self) -> bool:
        return self.taint is not None

    def shares_loop(self, other: Effect) -> LoopFrame | None:
        """The innermost loop instance enclosing both effects, if any."""
        mine = {frame.uid: frame for frame in self.loops}
        shared = [mine[frame.uid] for frame in other.loops if frame.uid in mine]
        return shared[-1] if shared else None


@dataclass
class Summary:
    """What one analysed call of a function produced."""

    effects: list[Effect] = field(default_factory=list)
    returned: Taint | None = None
    returned_parts: tuple[Taint | None, ...] | None = None  # per element when every return is a tuple
    tainted_params: dict[str, Taint] = field(default_factory=dict)
    self_fields: dict[str, Taint] = field(default_factory=dict)  # ``self.X`` holding VAL at the end
