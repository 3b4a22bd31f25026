"""PG201: the target token used to form its own prediction (C1 of #1017).

Shapes, each with a legal twin that must pass:
- hash keys that mix the target into the key and are *read* for the prediction
  (#779 ``ctx_hash ^ tgt * prime``) — BigramHash of input tokens and causal cache *updates*
  keyed by ``(context, target)`` after scoring are legal;
- gates/boosts computed from the target (#1420 ``is_bnd[tokens[p]]``, cocohearts #2041/#2118
  ``within_gate``/``word_gate``/``agree2plus``) — byte-accounting LUTs indexed by the target
  are legal (they never touch the prediction);
- SLOT: per-window tensors created with ``requires_grad`` and optimized against the targets
  that are then scored (#1229, #1240's flip-a-future-target proof) — score-first TTT, which
  scores before it updates, is legal;
- token statistics of a whole document (``bincount(doc)``) shaping its own predictions —
  locating documents by their BOS positions up front is legal (research Q14);
- the expert-gate weights of the #1420 n-gram lineage set nonzero in the configuration.
"""

from __future__ import annotations

import re

import libcst as cst

from harness.findings import Severity

from .lookups import CACHE_WORDS, LookupFacts
from .syntax import Hit, ModuleIndex, assigned_value, call_tail, nodes_within, step, strings_in, target_names, walk
from .targets import TargetInfo, is_shifted_slice, target_argument, value_names

GATE_WORDS = re.compile(
    r"gate|boost|within|word_?start|agree|expert|alpha|lam(b|bda)?\b|mix_?w|w_?mix|blend_?w|bonus|tilt_?w|conf",
    re.IGNORECASE,
)
_NOT_GATE = re.compile(r"byte|bpb|mask|len|count|loss|nll", re.IGNORECASE)


def find_target_in_key(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> list[Hit]:
    """One finding per hash expression that mixes the target into a key read for prediction."""
    hits: list[Hit] = []
    seen: set[int] = set()
    for key_expr, read in lookups.key_reads:
        if id(key_expr) in seen:
            continue
        seen.add(id(key_expr))
        target = info.first_mention(key_expr) or "the target"
        hits.append(
            Hit(
                rule="PG201",
                severity=Severity.ERROR,
                index=index,
                node=index.enclosing_statement(key_expr),
                message=(
                    f"hash key `{index.code(key_expr, 60)}` mixes the target token ({target}) into the key "
                    f"and is looked up at line {index.line(read)} to form the prediction of that same token"
                ),
                path=(
                    step(index, key_expr, f"target {target} hashed into the key"),
                    step(index, read, "key looked up to predict the scored token"),
                ),
            )
        )
    return hits


def _dependent_names(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> dict[str, bool]:
    """Names whose value depends on the target: name → True when through a cache lookup."""
    dependent: dict[str, bool] = {name: False for name in info.names}
    dependent.update({name: True for name in lookups.cache_names})
    assigns = nodes_within(index.assigns, info.function, index)
    for _ in range(4):
        changed = False
        for statement in assigns:
            value = assigned_value(statement)
            if value is None or _is_selection(value):
                continue
            via_cache = _mentions_dependent(value, info, dependent)
            if via_cache is None:
                continue
            for name in target_names(statement):
                if name not in dependent:
                    dependent[name] = via_cache
                    changed = True
        if not changed:
            break
    return dependent


def _is_selection(value: cst.CSTNode) -> bool:
    """Picking the realized token's score out of a distribution is the legal final step."""
    return any(isinstance(n, cst.Call) and call_tail(n) in {"cross_entropy", "nll_loss", "gather"} for n in walk(value))


def _mentions_dependent(expr: cst.CSTNode, info: TargetInfo, dependent: dict[str, bool]) -> bool | None:
    """None when ``expr`` does not depend on the target; else whether it does via a cache."""
    via_cache: bool | None = None
    for name in value_names(expr):
        if name.value in dependent:
            via_cache = bool(via_cache) or dependent[name.value]
    if via_cache is None and info.mentions(expr):
        via_cache = False
    if via_cache is False:
        for node in walk(expr):
            if isinstance(node, cst.Subscript) and any(info.mentions(e) for e in node.slice) and any(
                CACHE_WORDS.search(n.value) for n in value_names(node.value)
            ):
                return True
    return via_cache


def find_target_gates(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> list[Hit]:
    """Gate/boost/mixing-weight values that read the target (PG201) or a target-keyed cache hit (PG202)."""
    dependent = _dependent_names(index, info, lookups)
    hits: list[Hit] = []
    for statement in nodes_within(index.assigns, info.function, index):
        names = [n for n in target_names(statement) if GATE_WORDS.search(n) and not _NOT_GATE.search(n)]
        value = assigned_value(statement)
        if not names or value is None or _is_selection(value):
            continue
        via_cache = _mentions_dependent(value, info, dependent)
        if via_cache is not None:
            hits.append(_gate_hit(index, statement, names[0], via_cache))
    for node in nodes_within([n for n in _ifs(info.function)], info.function, index):
        via_cache = _mentions_dependent(node.test, info, dependent)
        if via_cache is None:
            continue
        assigned = [
            n for s in nodes_within(index.assigns, node.body, index) for n in target_names(s)
            if GATE_WORDS.search(n) and not _NOT_GATE.search(n)
        ]
        if assigned:
            hits.append(_gate_hit(index, node, assigned[0], via_cache, test=node.test))
        elif not via_cache and info.mentions(node.test):
            boosted = _scored_row_boost(index, info.function, node)
            if boosted is not None:
                hits.append(_gate_hit(index, node, boosted, via_cache, test=node.test))
    return hits


def _scored_row_boost(index: ModuleIndex, function: cst.FunctionDef, branch: cst.If) -> str | None:
    """``if not bnd[tk[p]]: r[~bnd] += w`` then ``L -= (r - lse(r))[tk[p]]``: a branch on the
    target that adds to the logit row which is then scored (the #1420 within-word expert
    with no gate variable)."""
    rows = {
        index.code(s.target.value)
        for s in nodes_within(index.assigns, branch.body, index)
        if isinstance(s, cst.AugAssign) and isinstance(s.target, cst.Subscript) and isinstance(s.target.value, cst.Name)
    }
    if not rows:
        return None
    end = index.parsed.positions[branch].end.line  # type: ignore[index]
    for statement in nodes_within(index.assigns, function, index):
        if not isinstance(statement, cst.AugAssign) or index.line(statement) <= end:
            continue
        if not isinstance(statement.target, cst.Name):
            continue
        used = {n.value for n in value_names(statement.value)}
        scored = any(isinstance(n, cst.Call) and call_tail(n) in _ROW_SCORERS for n in walk(statement.value)) or any(
            isinstance(n, cst.Subscript) for n in walk(statement.value)
        )
        hit = sorted(rows & used)
        if hit and scored:
            return hit[0]
    return None


_ROW_SCORERS = {"log_softmax", "logsumexp", "lse", "log", "cross_entropy"}


def _ifs(function: cst.FunctionDef) -> list[cst.If]:
    return [n for n in walk(function.body) if isinstance(n, cst.If)]


def _factors(node: cst.CSTNode) -> tuple[cst.CSTNode, ...]:
    """Name/attribute factors of a product (``h.word_boost * is_ws[t]`` → ``h.word_boost``): a
    configured factor of 0 switches the gate off."""
    value = assigned_value(node)
    found: list[cst.CSTNode] = []
    stack = [value] if value is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, cst.Multiply):
            stack.extend((current.left, current.right))
        elif isinstance(current, (cst.Name, cst.Attribute)):
            found.append(current)
    return tuple(found)


def _gate_hit(index: ModuleIndex, node: cst.CSTNode, gate: str, via_cache: bool, test: cst.CSTNode | None = None) -> Hit:
    shown = index.code(test if test is not None else node, 70)
    if via_cache:
        return Hit(
            rule="PG202",
            severity=Severity.ERROR,
            index=index,
            node=node,
            message=(
                f"mixing weight `{gate}` depends on whether the cache holds the realized target token "
                f"(`{shown}`), so the mixture is not one distribution fixed before the target is known"
            ),
            path=(step(index, node, "weight chosen by a cache hit on the realized token"),),
        )
    return Hit(
        rule="PG201",
        severity=Severity.ERROR,
        index=index,
        node=node,
        message=f"gate `{gate}` reads the target token of the scored position (`{shown}`)",
        path=(step(index, node, "gate computed from the target token"),),
        zero_factors=_factors(node),
    )


EXPERT_GATE_SETTING = re.compile(r"^(within|word)_?(boost|gate|start_boost)$|^agree_?2_?plus$", re.IGNORECASE)


def find_expert_gate_settings(indexes: list[ModuleIndex], configuration) -> list[Hit]:
    """Within-word / word-start / agreement experts of the #1420 n-gram lineage gate on the
    target token; organizers accept that lineage only with these weights at 0 (#1514,
    cocohearts #2041/#2118, #2135 ``within_gate=0 word_gate=0 agree2plus=0``)."""
    hits: list[Hit] = []
    for key, bindings in configuration.bindings.items():
        for binding in bindings:
            if not EXPERT_GATE_SETTING.match(key) and not _reads_expert_gate_env(binding.expr):
                continue
            evaluation = configuration.evaluate(binding.expr)
            value = evaluation.value
            if not isinstance(value, (int, float)) or value == 0:
                continue
            index = binding.index
            statement = next(
                (a for a in index.ancestors(binding.expr) if isinstance(a, (cst.Assign, cst.AnnAssign))), binding.expr
            )
            documented = [f"{n}={v} in {st.file}:{st.line}" for n, v, st in evaluation.used if st is not None]
            origin = f" ({', '.join(documented)})" if documented else ""
            hits.append(
                Hit(
                    rule="PG201",
                    severity=Severity.ERROR,
                    index=index,
                    node=statement,
                    message=(
                        f"`{key}` = {value:g}{origin}: the within-word/word-start/agreement expert gates of the n-gram tilt "
                        "lineage read the target token; they are accepted only at 0 (#1514, #2041, #2118)"
                    ),
                    path=(step(index, statement, f"{key} is nonzero in the configuration that ran"),),
                )
            )
    return hits


def _reads_expert_gate_env(expr: cst.CSTNode) -> bool:
    """``wb = float(os.environ.get("WORD_BOOST", "0.3"))``: minified code binds the expert
    weight to a one-letter field, so the env name it reads identifies it instead."""
    return any(EXPERT_GATE_SETTING.match(text) for text in strings_in(expr))


def find_slot(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """Per-window tensors optimized on the targets that are scored afterwards (SLOT)."""
    function = info.function
    calls = nodes_within(index.calls, function, index)
    fresh: dict[str, cst.CSTNode] = {}
    for call in calls:
        grad_on = any(
            a.keyword is not None and a.keyword.value == "requires_grad" and index.code(a.value) == "True" for a in call.args
        ) or call_tail(call) in {"requires_grad_", "Parameter"}
        if not grad_on:
            continue
        statement = index.enclosing_statement(call)
        for name in target_names(statement):
            fresh.setdefault(name, call)
        if call_tail(call) == "requires_grad_" and isinstance(call.func, cst.Attribute):
            for name in value_names(call.func.value):
                fresh.setdefault(name.value, call)
    if not fresh:
        return []
    hits: list[Hit] = []
    for loop in nodes_within(index.loops, function, index):
        loop_calls = nodes_within(calls, loop, index)
        backward = next((c for c in loop_calls if call_tail(c) in {"backward", "grad"}), None)
        if backward is None:
            continue
        body_names = {n.value for n in value_names(loop.body)}
        params = sorted(body_names & set(fresh))
        used_targets = sorted(body_names & info.names)
        if not params or not used_targets:
            continue
        rebound = {n for s in nodes_within(index.assigns, loop, index) for n in target_names(s)}
        if isinstance(loop, cst.For):
            rebound |= {n.value for n in value_names(loop.target)}
        targets = [t for t in used_targets if t not in rebound]
        score = _score_after(index, loop, function, set(targets), set(params))
        if not targets or score is None:
            continue
        context_only = _optimized_positions(index, loop, function) == "context"
        what = (
            "context-only SLOT: the mask limits the loss to already-scored context positions, a form never "
            "ruled on (issue #1336)"
            if context_only
            else "SLOT on scored positions"
        )
        hits.append(
            Hit(
                rule="PG201",
                severity=Severity.WARNING if context_only else Severity.ERROR,
                index=index,
                node=backward,
                message=(
                    f"per-window tensors {', '.join(params)} are optimized (backward at line {index.line(backward)}) "
                    f"against targets {', '.join(targets)} that are then scored at line {index.line(score)} "
                    f"({what})"
                ),
                path=(
                    step(index, fresh[params[0]], f"fresh trainable tensor {params[0]} per window"),
                    step(index, backward, f"optimized against targets {', '.join(targets)}"),
                    step(index, score, "the same targets are scored with the optimized tensors"),
                ),
            )
        )
    return hits


def find_slot_via_helper(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """``delta = optimize_delta(model, hidden, y, ...)`` then ``cross_entropy(head(hidden + delta), y)``:
    the SLOT optimization (#1229) moved into a helper of the same module."""
    hits: list[Hit] = []
    function = info.function
    for call in nodes_within(index.calls, function, index):
        positions = [
            i for i, a in enumerate(call.args)
            if a.keyword is None and isinstance(a.value, cst.Name) and a.value.value in info.names
        ]
        if not positions:
            continue
        for helper in index.functions_named(call_tail(call)):
            if helper is function or not _optimizes_on_parameter(index, helper, positions):
                continue
            statement = index.enclosing_statement(call)
            outputs = set(target_names(statement))
            targets = {call.args[i].value.value for i in positions}  # type: ignore[union-attr]
            score = _score_after(index, statement, function, targets, outputs) if outputs else None
            if score is None:
                continue
            hits.append(
                Hit(
                    rule="PG201",
                    severity=Severity.ERROR,
                    index=index,
                    node=statement,
                    message=(
                        f"`{helper.name.value}` optimizes fresh per-window tensors against targets "
                        f"{', '.join(sorted(targets))}, which are then scored with them at line {index.line(score)} "
                        "(SLOT on scored positions)"
                    ),
                    path=(
                        step(index, helper, f"{helper.name.value} runs backward on a loss of its target argument"),
                        step(index, statement, "called with the targets of this window"),
                        step(index, score, "the same targets are scored with the optimized tensors"),
                    ),
                )
            )
    return hits


def _optimizes_on_parameter(index: ModuleIndex, helper: cst.FunctionDef, positions: list[int]) -> bool:
    """The helper creates a trainable tensor and runs backward in a loop whose body reads
    one of the parameters at ``positions``, without rebinding it."""
    params = [p.name.value for p in helper.params.params]
    watched = {params[i] for i in positions if i < len(params)}
    calls = nodes_within(index.calls, helper, index)
    fresh = any(
        any(a.keyword is not None and a.keyword.value == "requires_grad" and index.code(a.value) == "True" for a in c.args)
        or call_tail(c) in {"requires_grad_", "Parameter"}
        for c in calls
    )
    if not fresh or not watched:
        return False
    for loop in nodes_within(index.loops, helper, index):
        if not any(call_tail(c) == "backward" for c in nodes_within(calls, loop, index)):
            continue
        rebound = {n for s in nodes_within(index.assigns, loop, index) for n in target_names(s)}
        if {n.value for n in value_names(loop.body)} & (watched - rebound):
            return True
    return False


def _optimized_positions(index: ModuleIndex, loop: cst.CSTNode, function: cst.FunctionDef) -> str | None:
    """"context" when every loss mask used in ``loop`` is set only on a leading slice
    (``mask[:, :s] = 1``), "scored" when a mask covers a trailing slice (``mask[:, s:] = 1``)."""
    used = {n.value for n in value_names(loop.body)}
    kinds: set[str] = set()
    for statement in nodes_within(index.assigns, function, index):
        if not isinstance(statement, cst.Assign):
            continue
        for target in (t.target for t in statement.targets):
            if not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name)):
                continue
            if target.value.value not in used or not target.slice:
                continue
            element = target.slice[-1].slice
            if not isinstance(element, cst.Slice):
                continue
            leading = element.lower is None or index.code(element.lower) == "0"
            kinds.add("context" if leading and element.upper is not None else "scored")
    if kinds == {"context"}:
        return "context"
    return "scored" if kinds else None


def _score_after(
    index: ModuleIndex, loop: cst.CSTNode, function: cst.FunctionDef, targets: set[str], params: set[str]
) -> cst.CSTNode | None:
    """The first scoring call after ``loop`` on the same targets, with the optimized tensors
    used somewhere between the loop and that call (``logits = f(h + delta)``)."""
    loop_end = index.parsed.positions[loop].end.line  # type: ignore[index]
    params_used = False
    for statement in sorted(nodes_within(index.assigns, function, index), key=index.line):
        if index.line(statement) <= loop_end:
            continue
        value = assigned_value(statement)
        if value is None:
            continue
        names = {n.value for n in value_names(value)}
        params_used = params_used or bool(names & params)
        scoring = [
            n for n in walk(value)
            if isinstance(n, cst.Call) and call_tail(n) in {"cross_entropy", "nll_loss", "gather"}
        ]
        if params_used and any({v.value for v in value_names(c)} & targets for c in scoring):
            return statement
    return None


_DOC_STATISTICS = {"bincount", "Counter", "histc", "unique", "histogram"}
_PREDICTION_WORDS = re.compile(r"logit|log_softmax|softmax|prob|bias|prior|tilt", re.IGNORECASE)


def _position(index: ModuleIndex, node: cst.CSTNode) -> tuple[int, int]:
    """(line, column): minified code puts the statistics and their use on one line."""
    start = index.parsed.positions[node].start  # type: ignore[index]
    return start.line, start.column


def _sliced_target_source(call: cst.Call) -> str | None:
    """``cross_entropy(lg, torch.from_numpy(d[1:]).long())``: minified code passes the shifted
    slice straight into the loss, so the scored sequence is ``d`` without a named target."""
    node = target_argument(call)
    while isinstance(node, cst.Call):
        if isinstance(node.func, cst.Attribute) and not node.args:
            node = node.func.value
        elif node.args:
            node = node.args[0].value
        else:
            return None
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Name) and is_shifted_slice(node):
        return node.value.value
    return None


def find_whole_document_statistics(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """Token statistics of a whole document (targets included) feeding its own predictions:
    ``counts = bincount(doc)`` then ``logits + beta * log(counts)`` before ``doc[1:]`` is scored."""
    sources: dict[str, cst.CSTNode] = {}
    for name in info.names:
        origin = info.origin.get(name)
        value = assigned_value(origin) if origin is not None and not isinstance(origin, cst.FunctionDef) else None
        while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            value = value.func.value
        if isinstance(value, cst.Subscript) and isinstance(value.value, cst.Name):
            sources[value.value.value] = origin
        elif isinstance(origin, cst.Call):
            sliced = _sliced_target_source(origin)
            if sliced is not None:
                sources[sliced] = origin
    if not sources:
        return []
    hits: list[Hit] = []
    assigns = sorted(nodes_within(index.assigns, info.function, index), key=index.line)
    for statement in assigns:
        value = next(
            (
                n for n in walk(assigned_value(statement) or statement)
                if isinstance(n, cst.Call) and call_tail(n) in _DOC_STATISTICS and n.args
            ),
            None,
        )
        if value is None:
            continue
        argument = value.args[0].value
        if not (isinstance(argument, cst.Name) and argument.value in sources):
            continue
        stats = set(target_names(statement))
        use = next(
            (
                later for later in assigns
                if _position(index, later) > _position(index, statement)
                and {n.value for n in value_names(assigned_value(later) or later)} & stats
                and any(_PREDICTION_WORDS.search(n) for n in target_names(later) + [v.value for v in value_names(later)])
            ),
            None,
        )
        if use is None:
            continue
        hits.append(
            Hit(
                rule="PG201",
                severity=Severity.ERROR,
                index=index,
                node=statement,
                message=(
                    f"`{index.code(value, 50)}` counts the tokens of the whole sequence `{argument.value}`, whose targets "
                    f"are scored, and the counts shape the prediction at line {index.line(use)}"
                ),
                path=(
                    step(index, sources[argument.value], f"targets are taken from {argument.value}"),
                    step(index, statement, "statistics over the whole sequence, future targets included"),
                    step(index, use, "statistics used to form the prediction"),
                ),
            )
        )
    return hits
