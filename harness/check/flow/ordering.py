"""The ordering rules PG101–PG106 over one root's effect timeline.

Why order-based: the same calls (forward, backward, step, accumulate) appear in legal score-first
TTT and in illegal train-then-score; what differs is whether a chunk is scored before an update
uses it (in a loop whose data advances per iteration), and what follows the updates (serialization:
pre-quant TTT; another scoring pass: re-scoring). See rules-research §D and the verdict table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.check.flow.model import Effect, EffectKind, LoopFrame
from harness.check.flow.names import TRAIN_PIPELINE_NAME, is_val_name
from harness.findings import Step


@dataclass
class Decision:
    rule: str
    sink: Effect  # whose file/line the finding points at and whose conditions decide severity
    message: str
    related: list[tuple[Effect, str]] = field(default_factory=list)
    at: Step | None = None  # where to point when not at the sink itself (a call site)
    when: str | None = None  # a situation the rule's page declares a lower severity for


def decide(effects: list[Effect], trains_params: set[int], diagnostic: Callable[[Step], bool]) -> list[Decision]:
    """``trains_params``: uids of functions that optimize a parameter's ``.parameters()`` —
    a score-first TTT that only trains a local adapter leaves the scored model unchanged.
    ``diagnostic``: whether a re-scoring call site only feeds diagnostic log lines."""
    updates = [e for e in effects if e.kind is EffectKind.UPDATE]
    scores = [e for e in effects if e.kind is EffectKind.SCORE and e.tainted]
    artifacts = [e for e in effects if e.kind is EffectKind.ARTIFACT]
    decisions: list[Decision] = []
    for update in updates:
        if update.tainted:
            decisions.extend(_judge_update(update, scores, artifacts, updates, trains_params, diagnostic))
    # a VAL-derived dump saved after the model artifact was written is a diagnostic, not the artifact
    last_model_write = max((a.order for a in artifacts if not a.tainted), default=math.inf)
    for effect in effects:
        if effect.taint is None:
            continue
        if effect.kind is EffectKind.CALIBRATION:
            # statistics gathered after the last write shape no artifact: an evaluation-time calibrator
            # (``online_alpha_calibrate`` of an n-gram mixer) is judged by the scoring rules
            if any(a.order > effect.order and not exclusive(a, effect) for a in artifacts):
                message = (
                    f"quantization statistics are collected on {_source(effect)} ({_at(effect)}): the artifact "
                    "is calibrated on validation data"
                )
                decisions.append(Decision("PG106", effect, message))
        elif effect.kind is EffectKind.ARTIFACT and not effect.taint.via_calibration:
            if effect.order <= last_model_write:
                message = (
                    f"{_source(effect)} flows into the artifact ({_at(effect)}): validation data is stored in "
                    "what is submitted"
                )
                decisions.append(Decision("PG105", effect, message))
        elif effect.kind is EffectKind.SELECTION:
            message = f"{_at(effect)}: a score on {_source(effect)} selects the checkpoint that is kept"
            decisions.append(Decision("PG105", effect, message))
    return decisions


def _judge_update(
    update: Effect,
    scores: list[Effect],
    artifacts: list[Effect],
    updates: list[Effect],
    trains_params: set[int],
    diagnostic: Callable[[Step], bool],
) -> list[Decision]:
    first = _scored_first(update, scores)
    if first is None:
        return _judge_unscored(update, [s for s in scores if not exclusive(s, update)], artifacts, updates)
    if update.ahead and not first.ahead:
        # score chunk ci, then train on chunk ci + 1: those tokens are scored only in the next
        # iteration, by the model that already trained on them (C3, #1017)
        message = (
            f"{_source(update)} is trained on ({_at(update)}) from a later chunk than the one just scored "
            f"({_where(first)}): that chunk is scored in a later iteration, after the update"
        )
        return [Decision("PG101", update, message, [(first, "the chunk scored in this iteration")])]
    found = (
        _baked_after_score_first(update, first, artifacts, trains_params)
        or _rescored_per_pass(update, scores)
        or _rescored_after_ttt(update, scores, updates, trains_params, diagnostic)
    )
    return [found] if found is not None else []


def _judge_unscored(
    update: Effect, scores: list[Effect], artifacts: list[Effect], updates: list[Effect]
) -> list[Decision]:
    """An update that no score of the same chunk precedes (``scores``: those that can run with it)."""
    source, at = _source(update), _at(update)
    later_scores = [s for s in scores if s.order > update.order]
    artifact = next((a for a in artifacts if a.order > update.order), None)
    in_training = any(p.shares_loop(update) for p in updates if not p.tainted)
    if in_training or _through_training_pipeline(update) or update.train_named:
        message = f"{source} is used in the training loop ({at}): training batches are drawn from validation data"
        return [Decision("PG105", update, message)]
    if update.discarded:
        kind = "a warm-up" if update.warmup else "a throw-away pass"
        message = (
            f"{source} is trained on in {kind} ({at}) outside the scoring loop; the updated state appears to "
            "be discarded afterwards"
        )
        return [Decision("PG104", update, message)]
    if artifact is not None:
        message = (
            f"{source} is trained on ({at}) before the model is serialized/quantized ({_at(artifact)}): "
            "pre-quant TTT bakes validation data into the artifact"
        )
        return [Decision("PG102", update, message, [(artifact, "artifact boundary after the update")])]
    if not later_scores:
        # scored earlier in the same loop body: the next iteration scores what this one trained on
        later_scores = [s for s in scores if s.order < update.order and s.shares_loop(update) is not None]
    if later_scores:
        outside = [s for s in later_scores if s.shares_loop(update) is None]
        score = outside[-1] if outside else later_scores[0]
        message = f"{source} is trained on ({at}) before it is scored ({_call_where(score, update)})"
        decisions = [Decision("PG101", update, message, [(score, "scored after the update")])]
        # a complete pass before this update — plain, or itself score-first TTT (#991: s_0 → train → s_1)
        prior = [s for s in scores if s.order < update.order and s.shares_loop(update) is None]
        if prior and outside:
            again = outside[-1]
            message = (
                f"{source} is scored ({_call_where(prior[0], update)}), trained on ({at}) and scored again "
                f"({_call_where(again, update)}): the second pass re-scores tokens the model has trained on"
            )
            related = [(prior[0], "first scoring pass"), (update, "update on the scored tokens")]
            decisions.append(Decision("PG103", again, message, related, at=_diverging_call(again, update)))
        return decisions
    if any(s.order < update.order for s in scores):
        # trained after everything was scored and nothing is scored or saved afterwards
        message = (
            f"{source} is trained on ({at}) after the last scoring pass; nothing scored or saved afterwards uses it"
        )
        return [Decision("PG104", update, message, when="after-last-score")]
    return [Decision("PG104", update, f"{source} is trained on ({at}) outside any scoring loop")]


def _baked_after_score_first(
    update: Effect, first: Effect, artifacts: list[Effect], trains_params: set[int]
) -> Decision | None:
    """Score-first TTT that trains the model's own parameters, and the model is serialized or
    quantized afterwards: the shipped weights have trained on validation tokens — pre-quant TTT
    whatever order it scores in (R-TTT-PREQUANT, #1376, #1423; "TTT before quantization")."""
    if not any(uid in trains_params for uid in update.function_ids):
        return None
    later = [
        a
        for a in artifacts
        if a.order > update.order and not a.tainted and a.shares_loop(update) is None and not exclusive(a, update)
    ]
    if not later:
        return None
    message = (
        f"{_source(update)} is trained on ({_at(update)}, after scoring it in {_where(first)}) and the model is "
        f"serialized/quantized afterwards ({_at(later[0])}): the artifact carries weights adapted on validation data"
    )
    return Decision("PG102", update, message, [(later[0], "artifact boundary after the update")])


def _scored_first(update: Effect, scores: list[Effect]) -> Effect | None:
    """A score of the same chunk earlier in the same iteration of a chunk/document loop."""
    advancing = {frame.uid for frame in update.loops if frame.advancing}
    earlier = (s for s in scores if s.order < update.order)
    return next((s for s in earlier if any(frame.uid in advancing for frame in s.loops)), None)


def _rescored_per_pass(update: Effect, scores: list[Effect]) -> Decision | None:
    """Score-first inside, but wrapped in a pass/epoch loop over the same data: every pass
    after the first scores tokens the model has already trained on (#568, #642)."""
    accumulations_first = sorted(scores, key=lambda s: (s.note.startswith("scored under no_grad"), s.order))
    for score in accumulations_first:
        epoch = _shared_pass_loop(update, score)
        if epoch is not None:
            message = (
                f"{_source(score)} is scored ({_where(score)}) inside `{epoch.label}` (line {epoch.line}), which also "
                f"trains on the same tokens ({_at(update)}): later passes re-score tokens already trained on"
            )
            return Decision("PG103", score, message, [(update, "update inside the same pass loop")])
    return None


def _rescored_after_ttt(
    update: Effect,
    scores: list[Effect],
    updates: list[Effect],
    trains_params: set[int],
    diagnostic: Callable[[Step], bool],
) -> Decision | None:
    """Score-first TTT, then another plain scoring pass of the same adapted model that is the
    last (headline) evaluation (#991: "scoring again (yielding some s_1) and then reporting s_1")."""
    if not scores:
        return None
    last = scores[-1]  # ``updates`` holds ``update`` too: the last score shares a loop with no update
    if last.order < update.order or exclusive(last, update) or any(last.shares_loop(u) for u in updates):
        return None
    depth = _diverging_depth(last, update)
    if depth is None or depth >= len(update.call_names):
        return None
    if not any(uid in trains_params for uid in update.function_ids[depth + 1 :]):
        return None
    models_scored = {n for n in last.call_names[depth] if "model" in n.lower()}
    if not models_scored or not models_scored <= update.call_names[depth]:
        return None
    again = last.calls[depth]
    if diagnostic(again):
        return None  # the score-first pass is the headline; the re-score is only logged (#1004)
    message = (
        f"{_source(last)} is scored again ({again.note} at {again.file}:{again.line}) after the model was trained "
        f"on it ({_at(update)}); the last pass, not the score-first one, is the final evaluation"
    )
    return Decision("PG103", last, message, [(update, "update on the scored tokens")], at=again)


def exclusive(first: Effect, second: Effect) -> bool:
    """The two effects sit on paths that never both run: one needs a test true that the other
    needs false (``if os.environ.get("TTT_ONLY") == "1": …; return`` before the normal path —
    the evaluation-only branch's TTT is not followed by the training path's scoring)."""
    if first.shares_loop(second) is not None:
        return False  # a test inside a shared loop can go either way from one iteration to the next
    wanted = {(id(c.expr), c.scope): c.want for c in first.conds}
    return any(wanted.get((id(c.expr), c.scope), c.want) != c.want for c in second.conds)


def _diverging_depth(effect: Effect, other: Effect) -> int | None:
    """Where ``effect``'s call chain leaves the one it shares with ``other``."""
    for position, call in enumerate(effect.calls):
        if position >= len(other.calls) or other.calls[position] != call:
            return position
    return None


def _shared_pass_loop(update: Effect, score: Effect) -> LoopFrame | None:
    score_frames = {f.uid: f for f in score.loops}
    for frame in update.loops:
        other = score_frames.get(frame.uid)
        if other is not None and frame.over_range and not frame.advancing and not other.advancing:
            if not _only_first_pass(score, frame):
                return frame
    return None


_FIRST_PASS = re.compile(r"^\s*(?:(\w+)\s*==\s*0|0\s*==\s*(\w+)|not\s+(\w+)|(\w+)\s*<\s*1)\s*$")


def _only_first_pass(score: Effect, loop: LoopFrame) -> bool:
    """``if epoch == 0: loss_sum += …`` scores each chunk once, before its first update."""
    for cond in score.conds:
        text = cond.parsed.flat_code(cond.expr)
        if cond.want and " or " not in text:
            matches = (_FIRST_PASS.match(clause.strip("() ")) for clause in text.split(" and "))
            if any(name in loop.targets for match in matches if match for name in match.groups() if name):
                return True
    return False


def _through_training_pipeline(effect: Effect) -> bool:
    notes = [step.note for step in effect.taint.path] if effect.taint is not None else []
    subjects = (note.split(" = ", 1)[0] if " = " in note else note.split(" ", 1)[0] for note in notes)
    return any(TRAIN_PIPELINE_NAME.search(part) for subject in subjects for part in subject.split("."))


def _source(effect: Effect) -> str:
    """The name a reviewer knows the data by: the first VAL-named binding on the path
    (``val_tokens``) rather than the file pattern it was loaded from."""
    if effect.taint is None or not effect.taint.path:
        return "validation data"
    for step in effect.taint.path[1:]:
        target = ""
        if " = " in step.note:
            target = step.note.split(" = ", 1)[0].strip()
        elif step.note.startswith("enters ") and step.note.endswith(")") and "(" in step.note:
            target = step.note[step.note.index("(") + 1 : -1]
        if target and is_val_name(target) and "files" not in target and "pattern" not in target:
            return target.removeprefix("self.")
    note = effect.taint.path[0].note
    return note.split("VAL source: ", 1)[1].split(" (", 1)[0] if "VAL source: " in note else "validation data"


def _at(effect: Effect) -> str:
    return f"{effect.note} at line {effect.line}"


def _where(effect: Effect) -> str:
    function = effect.functions[-1] if effect.functions else ""
    inside = f" in {function}" if function and function != "<module>" and function not in effect.note else ""
    return f"{effect.note}{inside} at {effect.file}:{effect.line}"


def _diverging_call(effect: Effect, other: Effect) -> Step | None:
    """The call site through which ``effect`` leaves the call chain it shares with ``other``:
    the ``eval_val_sliding(…)`` call in ``main`` rather than ``main()`` itself."""
    depth = _diverging_depth(effect, other)
    return None if depth is None else effect.calls[depth]


def _call_where(effect: Effect, other: Effect) -> str:
    """A scoring pass named by its call (``eval_val_sliding(…) at train_gpt.py:1490``)."""
    call = _diverging_call(effect, other)
    return f"{call.note} at {call.file}:{call.line}" if call is not None else _where(effect)


def evidence(decision: Decision) -> tuple[Step, ...]:
    """Source → propagation steps → sink, then the related effects that make it a violation."""
    sink = decision.sink
    steps: list[Step] = list(sink.taint.path) if sink.taint is not None else []
    steps.append(Step(sink.file, sink.line, f"sink: {sink.note}"))
    for effect, note in sorted(decision.related, key=lambda pair: pair[0].order):
        call = _diverging_call(effect, sink)
        if call is not None:
            steps.append(Step(call.file, call.line, f"{note}: {call.note}"))
        steps.append(Step(effect.file, effect.line, f"{note}: {effect.note}"))
    if decision.at is not None:
        steps.append(Step(decision.at.file, decision.at.line, f"reported pass: {decision.at.note}"))
    return tuple(steps)
