"""PG201: the target token used to form its own prediction (C1 of #1017). Shapes, each with a
legal twin that must pass:
- hash keys mixing the target in, *read* for the prediction (#779 ``ctx_hash ^ tgt * prime``) —
  BigramHash of input tokens and causal cache *updates* keyed by ``(context, target)`` are legal;
- gates/boosts computed from the target (#1420 ``is_bnd[tokens[p]]``, cocohearts #2041/#2118
  ``within_gate``/``word_gate``/``agree2plus``) — byte-accounting LUTs indexed by the target are
  legal (they never touch the prediction), and so are the expert weights configured at 0;
- token statistics of a whole document (``bincount(doc)``) shaping its own predictions —
  locating documents by their BOS positions up front is legal (research Q14).
SLOT, the other C1 shape, is ``slot.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import (
    assign_targets,
    assigned_value,
    call_tail,
    last_identifier,
    number_value,
    strings_in,
    target_names,
)
from harness.check.words import any_word, last_word

from .callees import helper_of, names_outside_helper_calls
from .hit import Hit, step
from .lookups import CACHE_WORDS, LookupFacts, collect_lookups, propagate_names
from .targets import TargetInfo, infer_targets, is_shifted_slice, target_argument, value_names
from .update_order import find_update_before_score

if TYPE_CHECKING:
    from harness.check.switches.reach import Configuration

# ---- vocabularies (whole words, harness/check/words.py) ------------------------------------
# A mixing weight or gate (``word_start_boost``, ``agree2plus``, ``mix_w``, ``ngram_lambda``).
GATE_WORDS = any_word(
    "*(gate|boost|agree|expert|alpha|bonus)*", "(within|conf|word_?start|mix_?w|blend_?w|tilt_?w)*", "w_?mix"
) | last_word("*lam(b|bda)?")
# ...that is a count or a score instead; ``len`` no longer matches blend (``blend_w`` is a gate).
_NOT_GATE = any_word("*(bytes?|bpb|mask|loss|nll)*", "(len|count)*", "*(lens?|lengths?|counts?)")
_SCORE_NAMES = any_word("*nll*", "*loss*", "bits*", "*bits", "nats*", "*nats", "*logp*", "*score*")
# Document statistics used as a prediction; ``prob`` no longer matches probe, ``prior`` priority.
_PREDICTION_WORDS = any_word("*(logits?|softmax|bias|tilt)*", "*(probs?(1|2)?|priors?)", "*probabilit*", "proba")
_DOC_STATISTICS = {"bincount", "Counter", "histc", "unique", "histogram"}
_ROW_SCORERS = {"log_softmax", "logsumexp", "lse", "log", "cross_entropy"}  # what turns a logit row into a score
EXPERT_GATE_SETTING = re.compile(r"^(within|word)_?(boost|gate|start_boost)$|^agree_?2_?plus$", re.IGNORECASE)
_CONVERTERS = {"float", "int", "bool"}  # ``wb = float(args.word_boost)`` still is the setting
_SMALL_STATEMENTS = (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Expr, cst.Return)


def find_target_in_key(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> Iterator[Hit]:
    """One finding per hash expression that mixes the target into a key read for prediction,
    and per loop that writes the target into a table cell read back before the position is
    scored (``update_order``: the same target-reaches-its-prediction-through-a-table shape)."""
    yield from find_update_before_score(index, info)
    first_reads: dict[int, tuple[cst.CSTNode, cst.CSTNode]] = {}
    for key_expr, read in lookups.key_reads:
        first_reads.setdefault(id(key_expr), (key_expr, read))
    for key_expr, read in first_reads.values():
        target = info.first_mention(key_expr) or "the target"
        yield Hit(
            rule="PG201",
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


def _dependent_names(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> dict[str, bool]:
    """Names whose value depends on the target: name → True when through a cache lookup. A cell
    store (``table[ctx] = tgt``) binds nothing: inserting the scored target into a cache is the legal
    causal update (#1514/#2135 tilt); reading that cell before the score is ``update_order``'s."""
    dependent: dict[str, bool] = {name: False for name in info.names}
    dependent.update({name: True for name in lookups.cache_names})

    def origin(statement: cst.CSTNode) -> bool | None:
        value = assigned_value(statement)
        stored = assign_targets(statement)
        if value is None or _is_selection(value) or (stored and all(isinstance(t, cst.Subscript) for t in stored)):
            return None
        return _mentions_dependent(value, info, dependent, index)

    propagate_names(dependent, nodes_within(index.assigns, info.function, index), origin)
    return dependent


def _is_selection(value: cst.CSTNode) -> bool:
    """Picking the realized token's score out of a distribution is the legal final step."""
    return any(isinstance(n, cst.Call) and call_tail(n) in {"cross_entropy", "nll_loss", "gather"} for n in walk(value))


def _mentions_dependent(
    expr: cst.CSTNode, info: TargetInfo, dependent: dict[str, bool], index: ModuleIndex
) -> bool | None:
    """None when ``expr`` does not depend on the target; else whether it does via a cache. A target
    only handed to a submission helper (``hints = build_hints(targets)``, the causal tilt of #2135)
    does not count: the helper is analysed on its own (``callees``)."""
    found = [dependent[n.value] for n in names_outside_helper_calls(index, expr) if n.value in dependent]
    via_cache: bool | None = any(found) if found else None
    if via_cache is None:
        # only metadata (``targets.size(0)``) or arguments of a submission helper mention it
        opaque = {id(c) for c in walk(expr) if isinstance(c, cst.Call) and helper_of(index, c) is not None}
        read_ids = {id(r) for r in info.reads}
        reads = [n for n in walk(expr) if id(n) in read_ids]
        if all(any(id(a) in opaque for a in index.ancestors(r)) for r in reads):
            return None
    if via_cache is None and info.mentions(expr):
        via_cache = False
    if via_cache is False and any(
        isinstance(node, cst.Subscript)
        and any(info.mentions(e) for e in node.slice)
        and any(CACHE_WORDS.search(n.value) for n in value_names(node.value))
        for node in walk(expr)
    ):
        return True
    return via_cache


def _gate_names(statement: cst.CSTNode) -> list[str]:
    return [n for n in target_names(statement) if GATE_WORDS.search(n) and not _NOT_GATE.search(n)]


def find_target_gates(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> Iterator[Hit]:
    """Gate/boost/mixing-weight values that read the target (PG201) or a target-keyed cache hit (PG202)."""
    dependent = _dependent_names(index, info, lookups)
    for statement in nodes_within(index.assigns, info.function, index):
        names = _gate_names(statement)
        value = assigned_value(statement)
        if not names or value is None or _is_selection(value):
            continue
        via_cache = _mentions_dependent(value, info, dependent, index)
        if via_cache is not None:
            yield _gate_hit(index, statement, names[0], via_cache)
    for node in (n for n in walk(info.function.body) if isinstance(n, cst.If)):
        parts = [p for p in _operands(node.test, (cst.And, cst.Or)) if not _is_none_check(p)]
        results = [r for r in (_mentions_dependent(p, info, dependent, index) for p in parts) if r is not None]
        if not results:
            continue
        via_cache = any(results)
        assigned = [n for s in nodes_within(index.assigns, node.body, index) for n in _gate_names(s)]
        if assigned:
            yield _gate_hit(index, node, assigned[0], via_cache, test=node.test)
        elif not via_cache and any(info.mentions(p) for p in parts):
            boosted = _scored_row_boost(index, info, node)
            if boosted is not None:
                yield _gate_hit(index, node, boosted, via_cache, test=node.test)


def _operands(expr: cst.BaseExpression | None, operators: type | tuple[type, ...]) -> list[cst.BaseExpression]:
    """The operands of a chain of ``operators`` (``a and b or c``, ``w * x * y``), last first."""
    found: list[cst.BaseExpression] = []
    stack = [expr] if expr is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, (cst.BooleanOperation, cst.BinaryOperation)) and isinstance(current.operator, operators):
            stack.extend((current.left, current.right))
        else:
            found.append(current)
    return found


def _is_none_check(node: cst.BaseExpression) -> bool:
    """``aux_targets is not None`` asks whether the target tensor was passed, not which token it
    holds, so it gates nothing on the realized token (#1922, an auxiliary-head training loss)."""
    if not isinstance(node, cst.Comparison):
        return False
    operands = [node.left] + [c.comparator for c in node.comparisons]
    return all(isinstance(c.operator, (cst.Is, cst.IsNot)) for c in node.comparisons) and any(
        isinstance(o, cst.Name) and o.value == "None" for o in operands
    )


def _scored_row_boost(index: ModuleIndex, info: TargetInfo, branch: cst.If) -> str | None:
    """``if not bnd[tk[p]]: r[~bnd] += w`` then ``L -= (r - lse(r))[tk[p]]``: a branch on the
    target that adds to the logit row which is then scored (the #1420 within-word expert
    with no gate variable). The boost may also rebind the row (``row = row + w * bias``, the
    #2041 shape) and reach the score through a normalizer (``logp = log_softmax(row)`` then
    ``nll -= logp[tok[p]]``), whatever the weight is called."""
    function = info.function
    rows: set[str] = set()
    for s in nodes_within(index.assigns, branch.body, index):
        if isinstance(s, cst.AugAssign):
            row = s.target.value if isinstance(s.target, cst.Subscript) else s.target
            if isinstance(row, cst.Name):
                rows.add(row.value)
        elif isinstance(s, cst.Assign) and len(s.targets) == 1 and isinstance(s.targets[0].target, cst.Name):
            name = s.targets[0].target.value
            if name in {n.value for n in value_names(s.value)}:
                rows.add(name)  # ``row = row + w * bias``: the row itself is boosted
    if not rows:
        return None
    end = index.parsed.positions[branch].end.line
    derived: dict[str, str] = {}  # normalized row → the boosted row it comes from
    for statement in nodes_within(index.assigns, function, index):
        if index.line(statement) <= end:
            continue
        used = {n.value for n in value_names(statement.value)} if statement.value is not None else set()
        direct = sorted(rows & used)
        through = sorted(derived[n] for n in used & set(derived))
        if isinstance(statement, cst.Assign):
            if (direct or through) and _returned_score(index, function, statement) and _is_scored(statement.value):
                return (direct or through)[0]
            for name in target_names(statement):
                if name not in rows and (direct or through):
                    derived.setdefault(name, min(direct + through))
        elif isinstance(statement, cst.AugAssign) and isinstance(statement.target, cst.Name):
            scored = _is_scored(statement.value)
            if direct and scored:
                return direct[0]
            if through and scored and info.mentions(statement.value):
                return through[0]
    return None


def _is_scored(value: cst.CSTNode) -> bool:
    return any(
        isinstance(n, cst.Subscript) or (isinstance(n, cst.Call) and call_tail(n) in _ROW_SCORERS) for n in walk(value)
    )


def _returned_score(index: ModuleIndex, function: cst.FunctionDef, statement: cst.Assign) -> bool:
    """``nll = -(r - lse(r))[tokens[p]]`` then ``return nll``: a helper that scores one
    position hands its score to the caller's sum instead of accumulating it (#1420 lineage
    helper classes)."""
    names = target_names(statement)
    if len(names) != 1 or not _SCORE_NAMES.search(names[0]):
        return False
    return any(
        isinstance(n, cst.Return) and n.value is not None and names[0] in {v.value for v in value_names(n.value)}
        for n in walk(function.body)
    )


def _gate_hit(
    index: ModuleIndex, node: cst.CSTNode, gate: str, via_cache: bool, test: cst.BaseExpression | None = None
) -> Hit:
    shown = index.code(test if test is not None else node, 70)
    if via_cache:
        return Hit(
            rule="PG202",
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
        index=index,
        node=node,
        message=f"gate `{gate}` reads the target token of the scored position (`{shown}`)",
        path=(step(index, node, "gate computed from the target token"),),
        zero_factors=_zero_factors(node, test),
    )


def _zero_factors(node: cst.CSTNode, test: cst.BaseExpression | None) -> tuple[cst.CSTNode, ...]:
    """Weights that switch a gate off when configured at 0 — the form organizers accept for the
    #1420 lineage (#1514, #2041 ``within_gate=0 word_gate=0``): the factors of its product
    (``h.word_boost * is_ws[t]``) and those its branch requires nonzero (``if h.word_boost > 0 and ...``)."""
    found = [f for f in _operands(assigned_value(node), cst.Multiply) if isinstance(f, (cst.Name, cst.Attribute))]
    for operand in _operands(test, cst.And):
        if isinstance(operand, cst.Comparison) and len(operand.comparisons) == 1:
            target = operand.comparisons[0]
            if isinstance(target.operator, (cst.GreaterThan, cst.NotEqual)) and number_value(target.comparator) == 0:
                operand = operand.left
        if isinstance(operand, (cst.Name, cst.Attribute)):
            found.append(operand)
    return tuple(found)


def find_expert_gate_settings(indexes: list[ModuleIndex], configuration: Configuration) -> Iterator[Hit]:
    """Within-word / word-start / agreement experts of the #1420 n-gram lineage are accepted only
    with their weights at 0 (#1514, cocohearts #2041/#2118, #2135). A nonzero weight is reported
    where the code gates it on the target of the scored position: gated on the previous, already
    scored token (``is_ws[tok[p - 1]]``) it is a causal context feature."""
    uses: dict[str, tuple[ModuleIndex, cst.CSTNode] | None] = {}
    for key, bindings in configuration.bindings.items():
        for binding in bindings:
            # minified code binds the weight to a one-letter field: the env name it reads names it
            # (``wb = float(os.environ.get("WORD_BOOST", "0.3"))``)
            if not EXPERT_GATE_SETTING.match(key) and not any(
                EXPERT_GATE_SETTING.match(text) for text in strings_in(binding.expr)
            ):
                continue
            evaluation = configuration.evaluate(binding.expr)
            value = evaluation.value
            if not isinstance(value, (int, float)) or value == 0:
                continue
            if key not in uses:
                uses[key] = _target_gate_use(indexes, key)
            use = uses[key]
            if use is None:
                continue
            use_index, use_node = use
            index = binding.index
            statement = index.enclosing_statement(binding.expr)  # the assignment that binds the setting
            documented = [f"{n}={v} in {st.file}:{st.line}" for n, v, st in evaluation.used if st is not None]
            origin = f" ({', '.join(documented)})" if documented else ""
            yield Hit(
                rule="PG201",
                index=index,
                node=statement,
                message=(
                    f"`{key}` = {value:g}{origin}: the within-word/word-start/agreement expert gates of the n-gram "
                    "tilt lineage read the target token; they are accepted only at 0 (#1514, #2041, #2118); "
                    f"here it is gated on the target at {use_index.name}:{use_index.line(use_node)}"
                ),
                path=(
                    step(index, statement, f"{key} is nonzero in the configuration that ran"),
                    step(use_index, use_node, f"{key} applied under a gate that reads the target token"),
                ),
            )


def _target_gate_use(indexes: list[ModuleIndex], key: str) -> tuple[ModuleIndex, cst.CSTNode] | None:
    """The first use of the setting field ``key`` (or a local alias of it) in a scoring
    function where a gate reads the target token: an enclosing ``if`` whose test reads it
    (``if w > 0 and not is_ws[tok[p]]:``), or the statement applying the weight reads it
    (``r[ws] += w * ws[tk[p]]``) other than as the index that picks the scored token."""
    for index in indexes:
        for function in index.functions:
            if key not in index.text_of(function):
                continue
            references = _setting_references(index, function, key)
            info = infer_targets(index, function) if references else None
            if info is None:
                continue
            dependent = _dependent_names(index, info, collect_lookups(index, info))
            for reference in references:
                if _gated_on_target(index, info, dependent, reference):
                    return index, index.enclosing_statement(reference)
    return None


def _setting_references(index: ModuleIndex, function: cst.FunctionDef, key: str) -> list[cst.CSTNode]:
    """``h.word_boost`` / ``word_boost`` in ``function``, and names it is copied to
    (``wb = float(args.word_boost)``, ``wb = args.word_boost if on else 0.0``)."""
    names = {key: True}

    def copied_setting(statement: cst.CSTNode) -> bool | None:
        value = assigned_value(statement)
        if not isinstance(statement, cst.Assign) or value is None:
            return None
        for candidate in [value.body, value.orelse] if isinstance(value, cst.IfExp) else [value]:
            while isinstance(candidate, cst.Call) and call_tail(candidate) in _CONVERTERS and candidate.args:
                candidate = candidate.args[0].value
            if last_identifier(candidate) in names:
                return True
        return None

    propagate_names(names, nodes_within(index.assigns, function, index), copied_setting)
    found: list[cst.CSTNode] = []
    for node in walk(function):
        if isinstance(node, cst.Attribute) and node.attr.value in names:
            found.append(node)
        elif isinstance(node, cst.Name) and node.value in names:
            parent = index.parent(node)
            attribute = isinstance(parent, cst.Attribute) and parent.attr is node
            if not attribute and not isinstance(parent, (cst.AssignTarget, cst.Param)):
                found.append(node)
    return found


def _gated_on_target(index: ModuleIndex, info: TargetInfo, dependent: dict[str, bool], reference: cst.CSTNode) -> bool:
    small: cst.CSTNode | None = None
    for ancestor in index.ancestors(reference):
        if small is None and isinstance(ancestor, _SMALL_STATEMENTS):
            small = ancestor
        if isinstance(ancestor, cst.If) and _mentions_dependent(ancestor.test, info, dependent, index) is not None:
            return True
        if ancestor is info.function or isinstance(ancestor, cst.FunctionDef):
            break
    return small is not None and _mentions_target_beside(index, info, dependent, small, reference)


def _mentions_target_beside(
    index: ModuleIndex, info: TargetInfo, dependent: dict[str, bool], statement: cst.CSTNode, reference: cst.CSTNode
) -> bool:
    """Does ``statement`` read the target other than as the index selecting the scored
    token out of an expression that holds ``reference`` (``nll -= (row + w * b)[tok[p]]``
    scores the boosted row; it does not gate the boost on the target)?"""
    holding = {id(reference)} | {id(a) for a in index.ancestors(reference)}
    read_ids = {id(r) for r in info.reads}
    mentions: list[cst.CSTNode] = [n for n in value_names(statement) if n.value in dependent]  # target names included
    mentions += [n for n in walk(statement) if id(n) in read_ids]
    for mention in mentions:
        child: cst.CSTNode = mention
        for ancestor in index.ancestors(mention):
            if ancestor is statement:
                return True
            if isinstance(ancestor, cst.Subscript) and isinstance(child, cst.SubscriptElement):
                if id(ancestor.value) in holding:
                    break  # the index that selects the scored token
            child = ancestor
        else:
            return True
    return False


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


def find_whole_document_statistics(index: ModuleIndex, info: TargetInfo) -> Iterator[Hit]:
    """Token statistics of a whole document (targets included) feeding its own predictions:
    ``counts = bincount(doc)`` then ``logits + beta * log(counts)`` before ``doc[1:]`` is scored.
    Minified code puts the statistics and their use on one line: statements are compared by
    their place in the source, not by line."""
    sources: dict[str, cst.CSTNode] = {}
    for name in info.names:
        origin = info.origin.get(name)
        value = assigned_value(origin) if origin is not None and not isinstance(origin, cst.FunctionDef) else None
        while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            value = value.func.value
        if isinstance(value, cst.Subscript) and isinstance(value.value, cst.Name) and origin is not None:
            sources[value.value.value] = origin
        elif isinstance(origin, cst.Call):
            sliced = _sliced_target_source(origin)
            if sliced is not None:
                sources[sliced] = origin
    if not sources:
        return
    assigns = nodes_within(index.assigns, info.function, index)  # in source order
    for place, statement in enumerate(assigns):
        counters = [
            n
            for n in walk(assigned_value(statement) or statement)
            if isinstance(n, cst.Call) and call_tail(n) in _DOC_STATISTICS and n.args
        ]
        if not counters:
            continue
        argument = counters[0].args[0].value
        if not (isinstance(argument, cst.Name) and argument.value in sources):
            continue
        stats = set(target_names(statement))
        uses = [
            later
            for later in assigns[place + 1 :]
            if {n.value for n in value_names(assigned_value(later) or later)} & stats
            and any(_PREDICTION_WORDS.search(n) for n in target_names(later) + [v.value for v in value_names(later)])
        ]
        if not uses:
            continue
        use = uses[0]
        yield Hit(
            rule="PG201",
            index=index,
            node=statement,
            message=(
                f"`{index.code(counters[0], 50)}` counts the tokens of the whole sequence `{argument.value}`, "
                f"whose targets are scored, and the counts shape the prediction at line {index.line(use)}"
            ),
            path=(
                step(index, sources[argument.value], f"targets are taken from {argument.value}"),
                step(index, statement, "statistics over the whole sequence, future targets included"),
                step(index, use, "statistics used to form the prediction"),
            ),
        )
