"""PG202: a probability formed only for the realized token, not normalized over the vocabulary.

Shapes (C2 of #1017; valerio #779/#1026/#1185, #659; cocohearts PPM rulings 2026-05-02):
- a count ratio read at the target and divided by a context count (``ctx_count + beta``)
  rather than by a sum over the vocabulary (#972 → #978; #886's distribution summing to 277);
- ``min`` between two per-token NLLs (#659: keep the lower of cache and model);
- byte-level mixtures that spread the realized token's probability over its bytes
  (``p ** (1 / n_bytes)``, #1835 cluster).
Mixing weights that depend on a cache hit for the realized token are found together with
the C1 gates (``causality.find_target_gates``). Legal: ``cross_entropy`` over all V logits,
``log_softmax(logits + bias)`` tilts, and ratios whose denominator sums over the vocab axis.
"""

from __future__ import annotations

import re

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, target_names
from harness.check.words import any_word, last_word

from .hit import Hit, step
from .lookups import LookupFacts
from .targets import TargetInfo, value_names

# ---- vocabulary (whole words over identifier words, harness/check/words.py) ----------------
# a per-token loss: ``nll``, ``tok_loss``, ``nbits``, ``neg_log_p``, ``model_ce``
NLL_WORDS = any_word("*nll*", "*loss*", "*bits", "nats", "neg_?log*", "logloss") | last_word("ces?")
# the unambiguous per-token names the builtin ``min`` needs (``loss`` alone may be a batch mean)
_PER_TOKEN = any_word("*nll*", "*bits", "nats", "neg_?log*", "logp*", "*logps?") | last_word("ces?")
# sanitizers: a best value tracked over time is not a per-token choice
_TRACKED = any_word("best*", "*best", "running*", "ema*", "lowest*", "record*")
_HISTORY = _TRACKED | any_word("prev*", "old*", "min_*")
_NORMALIZERS = {"sum", "logsumexp", "log_softmax", "softmax", "normalize", "nansum"}
_NORMALIZER_NAMES = re.compile(r"^(z|log_?z|lse|partition\w*|norm\w*|total_mass|row_sum\w*|\w*_sum)$", re.IGNORECASE)
_MIN_CALLS = {"minimum", "min", "fmin", "amin"}


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
        loss_bound = _loss_bound_names(index, call)
        if all(_names_nll(arg, strict=not elementwise) or _bound_to_loss(arg, loss_bound) for arg in positional):
            hits.append(
                Hit(
                    rule="PG202",
                    index=index,
                    node=call,
                    message=(
                        f"`{index.code(call, 70)}` keeps the lower of two per-token losses, which is not the "
                        "loss of any single distribution fixed before the target is seen"
                    ),
                    path=(step(index, call, "minimum taken over two NLLs of the same token"),),
                )
            )
    return hits


_LESS = (cst.LessThan, cst.LessThanEqual)
_GREATER = (cst.GreaterThan, cst.GreaterThanEqual)


def find_min_by_comparison(index: ModuleIndex) -> list[Hit]:
    """The #659 min-NLL spelled as a comparison: ``if new_nll < old_nll: scored[t] = new_nll``,
    ``nll = a if a < b else b`` or ``where(a < b, a, b)`` over two per-token losses keeps
    the better score of two predictors after seeing the target, exactly like ``minimum``.
    A running best over time (``best_loss``) is not a per-token choice and stays quiet."""
    hits: list[Hit] = []
    for comparison in index.comparisons:
        if len(comparison.comparisons) != 1:
            continue
        operator = comparison.comparisons[0].operator
        left, right = comparison.left, comparison.comparisons[0].comparator
        if isinstance(operator, _LESS):
            lesser = left
        elif isinstance(operator, _GREATER):
            lesser = right
        else:
            continue
        loss_bound = _loss_bound_names(index, comparison)
        operands = (left, right)
        if not all(_names_nll(side, strict=True) or _bound_to_loss(side, loss_bound) for side in operands):
            continue
        if any(_TRACKED.search(n.value) for side in operands for n in value_names(side)):
            continue
        chosen = _chosen_by(index, comparison, lesser)
        if chosen is None:
            continue
        hits.append(
            Hit(
                rule="PG202",
                index=index,
                node=index.enclosing_statement(comparison),
                message=(
                    f"`{index.code(comparison, 60)}` then `{index.code(chosen, 50)}` keeps the lower of two per-token "
                    "losses, which is not the loss of any single distribution fixed before the target is seen"
                ),
                path=(
                    step(index, comparison, "two losses of the same token compared"),
                    step(index, chosen, "the lower one is kept as the score"),
                ),
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
            value = assigned_value(statement)
            if isinstance(statement, cst.Assign) and value is not None and index.code(value, 1 << 16) == wanted:
                return statement
        return None
    if isinstance(parent, cst.IfExp) and parent.test is comparison:
        return parent if index.code(parent.body, 1 << 16) == wanted else None
    if isinstance(parent, cst.Arg):
        call = index.parent(parent)
        if isinstance(call, cst.Call) and call_tail(call) == "where" and len(call.args) == 3 and call.args[0] is parent:
            return call if index.code(call.args[1].value, 1 << 16) == wanted else None
    return None


def _names_nll(expr: cst.CSTNode, strict: bool) -> bool:
    """Does the argument name a per-token loss? The builtin ``min`` needs an unambiguous
    per-token name (``nll``, ``bits``); the elementwise ``torch.minimum`` accepts ``loss``."""
    names = [n.value for n in value_names(expr)]
    pattern = _PER_TOKEN if strict else NLL_WORDS
    return bool(names) and any(pattern.search(n) for n in names)


_STACKS = {"stack", "vstack", "cat", "concatenate"}


def _stacked_operands(call: cst.Call) -> list[cst.CSTNode] | None:
    """Operands of a min taken across a freshly stacked list: ``torch.stack([a, b]).min(0)``,
    ``np.min(np.stack([a, b]), 0)``, ``torch.amin(torch.stack([a, b]), 0)``."""
    candidates: list[cst.CSTNode] = []
    if isinstance(call.func, cst.Attribute):
        candidates.append(call.func.value)
    candidates += [a.value for a in call.args[:1] if a.keyword is None]
    for candidate in candidates:
        if isinstance(candidate, cst.Call) and call_tail(candidate) in _STACKS and candidate.args:
            listed = candidate.args[0].value
            if isinstance(listed, (cst.List, cst.Tuple)) and len(listed.elements) >= 2:
                return [e.value for e in listed.elements]
    return None


_LOSS_CALLS = {"cross_entropy", "nll_loss"}
_CONVERSIONS = {"numpy", "cpu", "float", "double", "detach", "tolist", "item", "reshape", "view", "flatten", "squeeze"}


def _loss_bound_names(index: ModuleIndex, node: cst.CSTNode) -> set[str]:
    """Names bound, in the function around ``node``, to a per-token loss by how it is computed
    rather than by its name: minified code (``nl=F.cross_entropy(...)``, ``nc=-math.log(p)``,
    ``nc=cache_nll(...)``) hides the #659 min-of-NLLs behind one-letter names."""
    function = index.enclosing_function(node)
    if function is None:
        return set()
    bound: set[str] = set()
    for statement in nodes_within(index.assigns, function, index):
        value = assigned_value(statement)
        if value is not None and _computes_loss(value):
            bound.update(target_names(statement))
    return bound


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
    if not isinstance(value, cst.Call):
        return False
    tail = call_tail(value)
    return tail in _LOSS_CALLS or bool(_PER_TOKEN.search(tail))


def _bound_to_loss(expr: cst.CSTNode, loss_bound: set[str]) -> bool:
    names = [n.value for n in value_names(expr)]
    return bool(names) and any(n in loss_bound for n in names)


def _running_best(index: ModuleIndex, call: cst.Call, args: list[cst.CSTNode]) -> bool:
    """``best = min(best, val_loss)`` tracks a best value over time; it scores nothing."""
    names = {n.value for arg in args for n in value_names(arg)}
    if any(_HISTORY.search(n) for n in names):
        return True
    statement = index.enclosing_statement(call)
    return bool(set(target_names(statement)) & names)


def find_unnormalized_ratio(index: ModuleIndex, info: TargetInfo, lookups: LookupFacts) -> list[Hit]:
    """``count_at_target / (ctx_count + beta)``: a probability read at y without a vocab-sum denominator."""
    if not lookups.cache_names:
        return []
    assigns = nodes_within(index.assigns, info.function, index)
    normalized_names = _normalized_names(assigns)
    mass_names = _vocab_mass_names(assigns)
    hits: list[Hit] = []
    seen_statements: set[int] = set()
    for binop in nodes_within(index.binops, info.function, index):
        if not isinstance(binop.operator, cst.Divide):
            continue
        numerator_names = {n.value for n in value_names(binop.left)}
        cached = sorted(numerator_names & set(lookups.cache_names))
        direct_read = any(any(node is site for site in lookups.cache_names.values()) for node in walk(binop.left))
        if not cached and not direct_read:
            continue
        if _normalized(binop.right, normalized_names, mass_names):
            continue
        statement = index.enclosing_statement(binop)
        if id(statement) in seen_statements:
            continue
        seen_statements.add(id(statement))
        origin = lookups.cache_names[cached[0]] if cached else binop.left
        hits.append(
            Hit(
                rule="PG202",
                index=index,
                node=statement,
                message=(
                    f"probability `{index.code(binop, 70)}` is computed only for the realized target from a count "
                    "lookup and divided by a context count, not normalized over the vocabulary"
                ),
                path=(
                    step(index, origin, "count read at the realized target token"),
                    step(index, binop, "divided by a denominator that is not a sum over the vocabulary"),
                ),
            )
        )
    return hits


def _normalized_names(assigns: list[cst.CSTNode]) -> set[str]:
    names: set[str] = set()
    for statement in assigns:
        value = assigned_value(statement)
        if value is not None and (
            any(isinstance(n, cst.Call) and call_tail(n) in _NORMALIZERS for n in walk(value))
            or _smoothed_over_vocab(value)
        ):
            names.update(target_names(statement))  # ``denom = total + a * V`` then ``/ max(denom, eps)`` (#804)
    return names


_VOCAB = re.compile(r"^(v|n_?vocab|vocab\w*|\w*vocab_size)$", re.IGNORECASE)


def _smoothed_over_vocab(denominator: cst.CSTNode) -> bool:
    """``total + alpha * V``: the Lidstone/Laplace denominator adds one pseudo-count per
    vocabulary entry to the context total, so ``(count[y] + alpha) / (total + alpha * V)`` sums
    to 1 over the vocabulary (#1453's Hedge experts) — unlike ``ctx_count + beta`` (#972)."""
    for node in walk(denominator):
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
            for side in (node.left, node.right):
                if isinstance(side, cst.BinaryOperation) and isinstance(side.operator, cst.Multiply):
                    words = [n.value for n in value_names(side)] + [
                        n.attr.value for n in walk(side) if isinstance(n, cst.Attribute)
                    ]
                    if any(_VOCAB.match(w) for w in words):
                        return True
    return False


def _vocab_mass_names(assigns: list[cst.CSTNode]) -> set[str]:
    """Names bound to ``a * V``: one pseudo-count per vocabulary entry, computed once before
    the loop (#2121 ``smooth_mass = smooth * vocab_size``), so ``total + smooth_mass`` is the
    same Lidstone denominator as ``total + smooth * vocab_size``."""
    names: set[str] = set()
    for statement in assigns:
        value = assigned_value(statement)
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Multiply) and _names_vocab(value):
            names.update(target_names(statement))
    return names


def _names_vocab(expr: cst.CSTNode) -> bool:
    words = [n.value for n in value_names(expr)] + [n.attr.value for n in walk(expr) if isinstance(n, cst.Attribute)]
    return any(_VOCAB.match(w) for w in words)


def _adds_vocab_mass(denominator: cst.CSTNode, mass_names: set[str]) -> bool:
    """``total + smooth_mass`` where ``smooth_mass`` was bound to ``a * V``."""
    for node in walk(denominator):
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
            for side in (node.left, node.right):
                if isinstance(side, cst.Name) and side.value in mass_names:
                    return True
    return False


def _normalized(denominator: cst.CSTNode, normalized_names: set[str], mass_names: set[str]) -> bool:
    if _smoothed_over_vocab(denominator) or _adds_vocab_mass(denominator, mass_names):
        return True
    for node in walk(denominator):
        if isinstance(node, cst.Call) and call_tail(node) in _NORMALIZERS:
            return True
    return any(n.value in normalized_names or _NORMALIZER_NAMES.match(n.value) for n in value_names(denominator))


def find_byte_spread(index: ModuleIndex) -> list[Hit]:
    """``p ** (1 / n_bytes)``: the realized token's probability spread over its own bytes."""
    hits = []
    for binop in index.binops:
        if not isinstance(binop.operator, cst.Power):
            continue
        exponent = binop.right
        if not (isinstance(exponent, cst.BinaryOperation) and isinstance(exponent.operator, cst.Divide)):
            continue
        numerator = exponent.left
        if not (isinstance(numerator, (cst.Integer, cst.Float)) and float(numerator.value) == 1.0):
            continue
        denominator_names = {n.value for n in value_names(exponent.right)}
        if not any(re.search(r"byte|len|n_?b|nbytes", n, re.IGNORECASE) for n in denominator_names) and not any(
            isinstance(n, cst.Call) and call_tail(n) == "len" for n in walk(exponent.right)
        ):
            continue
        hits.append(
            Hit(
                rule="PG202",
                index=index,
                node=index.enclosing_statement(binop),
                message=(
                    f"`{index.code(binop, 70)}` spreads the realized token's probability over its own bytes: a "
                    "byte-level mixture scored on the realized byte stream, not a normalized next-token distribution"
                ),
                path=(step(index, binop, "per-byte probability derived from the realized token"),),
            )
        )
    return hits


_PPM = re.compile(r"ppm", re.IGNORECASE)


def find_ppm_byte_scoring(index: ModuleIndex) -> list[Hit]:
    """A PPM byte model scored over the realized token's own bytes (``for b in piece.encode()``),
    the defining shape of the byte-mixture cluster cocohearts excluded (#1835, #1959, #2076)."""
    hits = []
    byte_names: dict[int, set[str]] = {}  # per enclosing scope: every loop of a function shares it
    for loop in index.loops:
        if not isinstance(loop, cst.For):
            continue
        over_bytes = any(
            isinstance(n, cst.Call) and call_tail(n) in {"encode", "bytes", "bytearray"} for n in walk(loop.iter)
        ) or any(n.value in _realized_byte_names(index, loop, byte_names) for n in value_names(loop.iter))
        if not over_bytes:
            continue
        function = index.enclosing_function(loop)
        scope_text = index.text_of(function) if function is not None else index.text_of(loop)
        if not _PPM.search(scope_text):
            continue
        hits.append(
            Hit(
                rule="PG202",
                index=index,
                node=loop,
                message=(
                    "a byte-level PPM mixture is scored over the bytes of the realized token "
                    f"(`{index.code(loop.iter, 50)}`), not as a normalized next-token distribution"
                ),
                path=(step(index, loop, "loop over the realized token's bytes"),),
            )
        )
    return hits


def _realized_byte_names(index: ModuleIndex, loop: cst.For, known: dict[int, set[str]]) -> set[str]:
    """Names bound from ``….encode(…)`` in the loop's function (``raw = piece.encode()``)."""
    scope = index.enclosing_function(loop) or index.parsed.module
    names = known.get(id(scope))
    if names is not None:
        return names
    names = known[id(scope)] = set()
    for statement in nodes_within(index.assigns, scope, index):
        value = assigned_value(statement)
        if value is not None and any(isinstance(n, cst.Call) and call_tail(n) == "encode" for n in walk(value)):
            names.update(target_names(statement))
    return names
