"""PG202: a probability formed only for the realized token, not normalized over the vocabulary.

Shapes (C2 of #1017; valerio #779/#1026/#1185, #659; cocohearts PPM rulings 2026-05-02):
- a count ratio read at the target and divided by a context count (``ctx_count + beta``), not a
  sum over the vocabulary (#972 → #978; #886's distribution summing to 277);
- ``min`` between two per-token NLLs (#659: keep the lower of cache and model);
- byte-level mixtures spreading the realized token's probability over its bytes (#1835 cluster).
Mixing weights that depend on a cache hit for the realized token are C1 gates
(``causality.find_target_gates``). Legal: ``cross_entropy`` over all V logits,
``log_softmax(logits + bias)`` tilts, and ratios whose denominator sums over the vocab axis.
"""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, number_value, target_names
from harness.check.words import any_word, first_word, last_word
from harness.findings import Step

from .hit import Hit, step
from .lookups import LookupFacts
from .targets import TargetInfo, identifiers, value_names

# ---- vocabulary (whole words over identifier words, harness/check/words.py) ----------------
# a per-token loss: ``nll``, ``tok_loss``, ``nbits``, ``neg_log_p``, ``model_ce``
NLL_WORDS = any_word("*nll*", "*loss*", "*bits", "nats", "neg_?log*", "logloss") | last_word("ces?")
# the unambiguous per-token names the builtin ``min`` needs (``loss`` alone may be a batch mean)
_PER_TOKEN = any_word("*nll*", "*bits", "nats", "neg_?log*", "logp*", "*logps?") | last_word("ces?")
# sanitizers: a best value tracked over time is not a per-token choice
_TRACKED = any_word("best*", "*best", "running*", "ema*", "lowest*", "record*")
_HISTORY = _TRACKED | any_word("prev*", "old*", "min_*")
_NORMALIZERS = {"sum", "logsumexp", "log_softmax", "softmax", "normalize", "nansum"}
# a denominator named as a normalizer: ``z``, ``logZ``, ``lse``, ``partition``, ``norm_const``, ``row_sum``
_NORMALIZER_NAMES = (
    (first_word("z", "log_?z", "lse") & last_word("z", "log_?z", "lse"))
    | first_word("partition*", "norm*", "row_sum*")
    | last_word("sum", "total_mass")
)
# the vocabulary size: ``V``, ``n_vocab``, ``vocab``, ``tok_vocab_size``
_VOCAB = (first_word("v") & last_word("v")) | first_word("n_?vocab", "vocab*") | last_word("vocab_size")
_BYTE_COUNT = any_word("*byte*", "*len*", "nb*", "n_b*")
_PPM = any_word("*ppm*")
_BYTE_SOURCES = {"encode", "bytes", "bytearray"}
_MIN_CALLS = {"minimum", "min", "fmin", "amin"}
_STACKS = {"stack", "vstack", "cat", "concatenate"}
_LOSS_CALLS = {"cross_entropy", "nll_loss"}
_CONVERSIONS = {"numpy", "cpu", "float", "double", "detach", "tolist", "item", "reshape", "view", "flatten", "squeeze"}
_NOT_ONE_DISTRIBUTION = "which is not the loss of any single distribution fixed before the target is seen"


def _hit(index: ModuleIndex, node: cst.CSTNode, message: str, *path: Step) -> Hit:
    return Hit(rule="PG202", index=index, node=node, message=message, path=path)


def _calls(expr: cst.CSTNode, tails: set[str]) -> bool:
    return any(isinstance(node, cst.Call) and call_tail(node) in tails for node in walk(expr))


def _bound_names(assigns: list[cst.CSTNode], bound_to: Callable[[cst.BaseExpression], bool]) -> set[str]:
    """Names assigned a value that ``bound_to`` accepts."""
    return {
        name
        for statement in assigns
        if (value := assigned_value(statement)) is not None and bound_to(value)
        for name in target_names(statement)
    }


def find_min_over_nll(index: ModuleIndex) -> list[Hit]:
    """``torch.minimum(nll_a, nll_b)`` / ``min(nll_a, nll_b)``: keep-the-better-score per token."""
    hits = []
    for call in index.calls:
        if call_tail(call) not in _MIN_CALLS:
            continue
        positional: list[cst.CSTNode] = [a.value for a in call.args if a.keyword is None]
        stacked = _stacked_operands(call)
        if stacked is not None:
            positional = stacked  # ``torch.stack([nll_lm, nll_ng]).min(0)``: the same per-token choice
        elif len(positional) != 2 or any(isinstance(a, (cst.Integer, cst.Float)) for a in positional):
            continue
        if _running_best(index, call, positional):
            continue
        elementwise = stacked is not None or call_tail(call) in {"minimum", "fmin"}
        if _all_losses(index, call, positional, strict=not elementwise):
            message = f"`{index.code(call, 70)}` keeps the lower of two per-token losses, {_NOT_ONE_DISTRIBUTION}"
            hits.append(_hit(index, call, message, step(index, call, "minimum taken over two NLLs of the same token")))
    return hits


def find_min_by_comparison(index: ModuleIndex) -> list[Hit]:
    """The #659 min-NLL spelled as a comparison: ``if new_nll < old_nll: scored[t] = new_nll``,
    ``nll = a if a < b else b`` or ``where(a < b, a, b)``. A running best over time
    (``best_loss``) is not a per-token choice and stays quiet."""
    hits: list[Hit] = []
    for comparison in index.comparisons:
        if len(comparison.comparisons) != 1:
            continue
        operator = comparison.comparisons[0].operator
        left, right = comparison.left, comparison.comparisons[0].comparator
        if not isinstance(operator, (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)):
            continue
        lesser = left if isinstance(operator, (cst.LessThan, cst.LessThanEqual)) else right
        tracked = any(_TRACKED.search(n.value) for side in (left, right) for n in value_names(side))
        if tracked or not _all_losses(index, comparison, [left, right], strict=True):
            continue
        chosen = _chosen_by(index, comparison, lesser)
        if chosen is None:
            continue
        hits.append(
            _hit(
                index,
                index.enclosing_statement(comparison),
                f"`{index.code(comparison, 60)}` then `{index.code(chosen, 50)}` keeps the lower of two per-token "
                f"losses, {_NOT_ONE_DISTRIBUTION}",
                step(index, comparison, "two losses of the same token compared"),
                step(index, chosen, "the lower one is kept as the score"),
            )
        )
    return hits


def _chosen_by(index: ModuleIndex, comparison: cst.Comparison, lesser: cst.CSTNode) -> cst.CSTNode | None:
    """The node that keeps ``lesser`` when ``comparison`` holds: an assignment of it in the
    ``if`` body, the true branch of a conditional expression, or ``where(test, lesser, …)``."""
    parent = index.parent(comparison)
    wanted = index.code(lesser, 1 << 16)
    if isinstance(parent, cst.If) and parent.test is comparison:
        for statement in nodes_within(index.assigns, parent.body, index):
            if isinstance(statement, cst.Assign) and index.code(statement.value, 1 << 16) == wanted:
                return statement
        return None
    if isinstance(parent, cst.IfExp) and parent.test is comparison:
        return parent if index.code(parent.body, 1 << 16) == wanted else None
    if isinstance(parent, cst.Arg):
        call = index.parent(parent)
        if isinstance(call, cst.Call) and call_tail(call) == "where" and len(call.args) == 3 and call.args[0] is parent:
            return call if index.code(call.args[1].value, 1 << 16) == wanted else None
    return None


def _all_losses(index: ModuleIndex, node: cst.CSTNode, operands: list[cst.CSTNode], strict: bool) -> bool:
    """Does every operand name a per-token loss? The builtin ``min`` needs an unambiguous per-token
    name (``nll``, ``bits``); the elementwise ``torch.minimum`` accepts ``loss``. A name bound to a
    computed loss counts too: minified code (``nl=F.cross_entropy(...)``, ``nc=-math.log(p)``,
    ``nc=cache_nll(...)``) hides the #659 min-of-NLLs behind one-letter names."""
    function = index.enclosing_function(node)
    assigns = nodes_within(index.assigns, function, index) if function is not None else []
    bound = _bound_names(assigns, _computes_loss)
    pattern = _PER_TOKEN if strict else NLL_WORDS
    return all(any(pattern.search(n.value) or n.value in bound for n in value_names(op)) for op in operands)


def _stacked_operands(call: cst.Call) -> list[cst.CSTNode] | None:
    """Operands of a min taken across a freshly stacked list: ``torch.stack([a, b]).min(0)``,
    ``np.min(np.stack([a, b]), 0)``, ``torch.amin(torch.stack([a, b]), 0)``."""
    candidates = [call.func.value] if isinstance(call.func, cst.Attribute) else []
    candidates += [a.value for a in call.args[:1] if a.keyword is None]
    for candidate in candidates:
        if isinstance(candidate, cst.Call) and call_tail(candidate) in _STACKS and candidate.args:
            listed = candidate.args[0].value
            if isinstance(listed, (cst.List, cst.Tuple)) and len(listed.elements) >= 2:
                return [e.value for e in listed.elements]
    return None


def _computes_loss(value: cst.CSTNode) -> bool:
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus):
        inner = value.expression
        while isinstance(inner, cst.Call) and call_tail(inner) in {"float", "item"}:
            # ``float(x)`` unwraps to x, ``x.item()`` to x; anything else ends the walk
            # (``-t.item()`` once looped forever here: an argument-less call unwrapped to itself)
            if inner.args:
                inner = inner.args[0].value
            elif isinstance(inner.func, cst.Attribute):
                inner = inner.func.value
            else:
                break
        return isinstance(inner, cst.Call) and call_tail(inner) in {"log", "log2"}
    while (
        isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in _CONVERSIONS
    ):
        value = value.func.value  # ``F.cross_entropy(...).cpu().numpy()`` is still the loss
    return isinstance(value, cst.Call) and (call_tail(value) in _LOSS_CALLS or _PER_TOKEN.search(call_tail(value)))


def _running_best(index: ModuleIndex, call: cst.Call, args: list[cst.CSTNode]) -> bool:
    """``best = min(best, val_loss)`` tracks a best value over time; it scores nothing."""
    names = {n.value for arg in args for n in value_names(arg)}
    return any(_HISTORY.search(n) for n in names) or bool(names & set(target_names(index.enclosing_statement(call))))


def find_unnormalized_ratio(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> list[Hit]:
    """``count_at_target / (ctx_count + beta)``: a probability read at y without a vocab-sum denominator."""
    if not lookups.cache_names:
        return []
    assigns = nodes_within(index.assigns, info.function, index)
    # ``denom = total + a * V`` then ``/ max(denom, eps)`` (#804)
    normalized_names = _bound_names(assigns, lambda value: _calls(value, _NORMALIZERS) or _adds_vocab_mass(value))
    mass_names = _bound_names(assigns, _vocab_mass)
    hits: list[Hit] = []
    seen_statements: set[int] = set()
    for binop in nodes_within(index.binops, info.function, index):
        if not isinstance(binop.operator, cst.Divide):
            continue
        cached = sorted({n.value for n in value_names(binop.left)} & set(lookups.cache_names))
        direct_read = any(any(node is site for site in lookups.cache_names.values()) for node in walk(binop.left))
        if not (cached or direct_read) or _normalized(binop.right, normalized_names, mass_names):
            continue
        statement = index.enclosing_statement(binop)
        if id(statement) in seen_statements:
            continue
        seen_statements.add(id(statement))
        origin = lookups.cache_names[cached[0]] if cached else binop.left
        hits.append(
            _hit(
                index,
                statement,
                f"probability `{index.code(binop, 70)}` is computed only for the realized target from a count "
                "lookup and divided by a context count, not normalized over the vocabulary",
                step(index, origin, "count read at the realized target token"),
                step(index, binop, "divided by a denominator that is not a sum over the vocabulary"),
            )
        )
    return hits


def _vocab_mass(expr: cst.CSTNode) -> bool:
    """``alpha * V``: one pseudo-count per vocabulary entry."""
    return (
        isinstance(expr, cst.BinaryOperation)
        and isinstance(expr.operator, cst.Multiply)
        and any(_VOCAB.search(word) for word in identifiers(expr))
    )


def _adds_vocab_mass(denominator: cst.CSTNode, mass_names: frozenset[str] | set[str] = frozenset()) -> bool:
    """``total + alpha * V``: the Lidstone/Laplace denominator adds one pseudo-count per
    vocabulary entry to the context total, so ``(count[y] + alpha) / (total + alpha * V)`` sums
    to 1 over the vocabulary (#1453's Hedge experts) — unlike ``ctx_count + beta`` (#972). The
    mass may be computed once before the loop (#2121 ``total + smooth_mass``)."""
    for node in walk(denominator):
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
            for side in (node.left, node.right):
                if _vocab_mass(side) or (isinstance(side, cst.Name) and side.value in mass_names):
                    return True
    return False


def _normalized(denominator: cst.CSTNode, normalized_names: set[str], mass_names: set[str]) -> bool:
    return (
        _adds_vocab_mass(denominator, mass_names)
        or _calls(denominator, _NORMALIZERS)
        or any(n.value in normalized_names or _NORMALIZER_NAMES.search(n.value) for n in value_names(denominator))
    )


def find_byte_spread(index: ModuleIndex) -> list[Hit]:
    """``p ** (1 / n_bytes)``: the realized token's probability spread over its own bytes."""
    hits = []
    for binop in index.binops:
        if not isinstance(binop.operator, cst.Power):
            continue
        exponent = binop.right
        if not (isinstance(exponent, cst.BinaryOperation) and isinstance(exponent.operator, cst.Divide)):
            continue
        if number_value(exponent.left) != 1:
            continue
        if not any(_BYTE_COUNT.search(n.value) for n in value_names(exponent.right)) and not _calls(
            exponent.right, {"len"}
        ):
            continue
        hits.append(
            _hit(
                index,
                index.enclosing_statement(binop),
                f"`{index.code(binop, 70)}` spreads the realized token's probability over its own bytes: a "
                "byte-level mixture scored on the realized byte stream, not a normalized next-token distribution",
                step(index, binop, "per-byte probability derived from the realized token"),
            )
        )
    return hits


def find_ppm_byte_scoring(index: ModuleIndex) -> list[Hit]:
    """A PPM byte model scored over the realized token's own bytes (``for b in piece.encode()``),
    the defining shape of the byte-mixture cluster cocohearts excluded (#1835, #1959, #2076)."""
    hits = []
    byte_names: dict[int, set[str]] = {}  # per enclosing scope: every loop of a function shares it
    for loop in index.loops:
        if not isinstance(loop, cst.For):
            continue
        realized = _realized_byte_names(index, loop, byte_names)
        over_bytes = _calls(loop.iter, _BYTE_SOURCES) or any(n.value in realized for n in value_names(loop.iter))
        if not over_bytes or not _PPM.search(index.text_of(index.enclosing_function(loop) or loop)):
            continue
        hits.append(
            _hit(
                index,
                loop,
                "a byte-level PPM mixture is scored over the bytes of the realized token "
                f"(`{index.code(loop.iter, 50)}`), not as a normalized next-token distribution",
                step(index, loop, "loop over the realized token's bytes"),
            )
        )
    return hits


def _realized_byte_names(index: ModuleIndex, loop: cst.For, known: dict[int, set[str]]) -> set[str]:
    """Names bound from ``….encode(…)`` in the loop's function (``raw = piece.encode()``)."""
    scope = index.enclosing_function(loop) or index.parsed.module
    if id(scope) not in known:
        assigns = nodes_within(index.assigns, scope, index)
        known[id(scope)] = _bound_names(assigns, lambda value: _calls(value, {"encode"}))
    return known[id(scope)]
