"""PG203: previous-token mixing across document (BOS) boundaries without a mask.

Why only a warning, and only in document-isolating models: cocohearts blocked #1797 because
its SmearGate let the last token of document N leak into the BOS position of document N+1
while attention was document-masked (varlen / ``cu_seqlens``) and the TTT path batched
documents; #1851/#1855 fixed it with a ``not_bos`` mask. The rule is contested (issue
#1988, research Q4): a plain causal model that already attends across documents gains
nothing new from a one-token look-back, so there the shape is only noted (info).
"""

from __future__ import annotations

import re

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, number_value, target_names
from harness.check.words import any_word

from .hit import Hit, step
from .targets import value_names

# A document-boundary test (``bos_mask``, ``doc_start``, ``seg_ids``); ``bos`` no longer verbose.
BOS_WORDS = any_word(
    "(bos|doc_?start|is_start|start_mask|not_first|first_tok|new_doc|doc_?mask|same_doc|seg_?id|doc_?id)*",
    "*bos",
    "*(boundary|reset)*",
)
_ISOLATION = re.compile(
    r"cu_seqlens|varlen|document_mask|doc_?mask|doc_starts?|doc_bounds|doc_boundaries|doc_lens?|bos_positions|"
    r"find_docs|per_doc|docs_per",
    re.IGNORECASE,
)
# Token ids compared against a BOS id; ``tok`` no longer matches retokenize.
_ID_WORDS = any_word("*ids", "(ids|tok|input)*", "*(toks?|tokens?|inputs?)", "*idx*")
# Masks are built by comparisons, casts and reshapes, never by model calls: keeps
# ``x = block(x, cu_seqlens)`` from counting as a mask because it mentions one.
_MASK_METHODS = frozenset(
    "unsqueeze float to type_as bool logical_not view reshape expand half bfloat16 eq ne int long expand_as "
    "masked_fill where cumsum any".split()
)
# Token ids shifted for hashed n-gram inputs (``input_ids``, ``tokens``)
_TOKEN_IDS = re.compile(r"(^|_)(ids|idx|tokens?|toks)$", re.IGNORECASE)


def _slice_kind(subscript: cst.CSTNode | None) -> str | None:
    """``x[:, 1:]`` → "tail"; ``x[:, :-1]`` → "head"; anything else → None."""
    element = subscript.slice[-1].slice if isinstance(subscript, cst.Subscript) and subscript.slice else None
    if not isinstance(element, cst.Slice) or element.step is not None:
        return None
    if element.upper is None and element.lower is not None and number_value(element.lower) == 1:
        return "tail"
    if element.lower is None and element.upper is not None and number_value(element.upper) == -1:
        return "head"
    return None


def _is_hash_arithmetic(expr: cst.CSTNode) -> bool:
    """Token-id hashing (BigramHash) uses ^, %, << or large integer multipliers, not gates."""
    for node in (n for n in walk(expr) if isinstance(n, cst.BinaryOperation)):
        if isinstance(node.operator, (cst.BitXor, cst.Modulo, cst.LeftShift, cst.BitAnd)):
            return True
        factors = [number_value(node.left), number_value(node.right)] if isinstance(node.operator, cst.Multiply) else []
        if any(isinstance(value, int) and abs(value) >= 2 for value in factors):
            return True
    return False


def _smear_sites(index: ModuleIndex) -> list[tuple[cst.CSTNode, cst.CSTNode]]:
    """(statement, mixing expression) pairs that add a token's predecessor into it."""

    def adds_predecessor(current: cst.CSTNode, previous: cst.CSTNode) -> bool:
        """``x[:, 1:]`` plus an expression of ``x[:, :-1]``."""
        if not isinstance(current, cst.Subscript) or _slice_kind(current) != "tail":
            return False
        base = index.code(current.value)
        heads = [p for p in walk(previous) if isinstance(p, cst.Subscript) and _slice_kind(p) == "head"]
        return any(index.code(p.value) == base for p in heads)

    sites: list[tuple[cst.CSTNode, cst.CSTNode]] = [
        (index.enclosing_statement(binop), binop)
        for binop in index.binops
        if isinstance(binop.operator, cst.Add)
        and (adds_predecessor(binop.left, binop.right) or adds_predecessor(binop.right, binop.left))
    ]
    for statement in index.assigns:
        if isinstance(statement, cst.AugAssign) and isinstance(statement.operator, cst.AddAssign):
            if adds_predecessor(statement.target, statement.value):
                sites.append((statement, statement))
    sites += [(index.enclosing_statement(call), call) for call in index.calls if _shifts_sequence(index, call)]
    return [(s, e) for s, e in sites if not _is_hash_arithmetic(e) and not _shifts_token_ids(index, e)]


def _shifts_sequence(index: ModuleIndex, call: cst.Call) -> bool:
    """``lerp(x[:, 1:], x[:, :-1])``, ``roll(x, 1)``, ``cat([…, x[:, :-1]])``, ``pad(x, (0, 0, 1, 0))[:, :-1]``."""
    tail = call_tail(call)
    args = [a.value for a in call.args]
    if tail == "lerp" and len(args) >= 2:
        return _slice_kind(args[0]) == "tail" and _slice_kind(args[1]) == "head"
    if tail == "roll":
        shift = _second_argument(call, "shifts")
        return shift is not None and number_value(shift) == 1
    if tail == "cat" and args and isinstance(args[0], (cst.List, cst.Tuple)) and len(args[0].elements) >= 2:
        return _slice_kind(args[0].elements[-1].value) == "head"
    if tail == "pad":
        pad = _second_argument(call, "pad")
        values = [number_value(e.value) for e in pad.elements] if isinstance(pad, (cst.Tuple, cst.List)) else None
        return values in ([0, 0, 1, 0], [1, 0]) and _slice_kind(index.parent(call)) == "head"
    return False


def _shifts_token_ids(index: ModuleIndex, expr: cst.CSTNode) -> bool:
    """Shifting token ids (for hashed n-gram inputs) is not mixing hidden states."""
    bases = [n.value for n in walk(expr) if isinstance(n, cst.Subscript)]
    return any(_TOKEN_IDS.search(index.code(b)) for b in bases)


def _second_argument(call: cst.Call, keyword: str) -> cst.BaseExpression | None:
    positional = [a.value for a in call.args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    return keywords.get(keyword, positional[1] if len(positional) > 1 else None)


def _mask_names(index: ModuleIndex, function: cst.CSTNode) -> set[str]:
    """Names in ``function`` that hold (or are derived from) a BOS/document mask."""
    params = {p.name.value for p in function.params.params} if isinstance(function, cst.FunctionDef) else set()
    masks = {p for p in params if BOS_WORDS.search(p)}
    assigns = nodes_within(index.assigns, function, index)
    for _ in range(3):
        for statement in assigns:
            value = assigned_value(statement)
            if value is None or any(call_tail(n) not in _MASK_METHODS for n in walk(value) if isinstance(n, cst.Call)):
                continue
            names = {n.value for n in value_names(value)}
            compares_ids = any(
                isinstance(n, cst.Comparison)
                and (any(_ID_WORDS.search(v.value) for v in value_names(n)) or _literal_id_test(n, params))
                for n in walk(value)
            )
            if names & masks or any(BOS_WORDS.search(n) for n in names) or compares_ids:
                masks.update(target_names(statement))
    return masks


def _literal_id_test(comparison: cst.Comparison, params: set[str]) -> bool:
    """``(input_ids[:, 1:] == 1)`` (#1851) or minified ``(i != 1)``: a parameter of the forward
    (the token ids; activations are never compared to an integer) tested against a literal id."""
    left = comparison.left
    while isinstance(left, cst.Subscript):
        left = left.value
    if not (isinstance(left, cst.Name) and left.value in params):
        return False
    return all(
        isinstance(target.operator, (cst.Equal, cst.NotEqual)) and isinstance(target.comparator, cst.Integer)
        for target in comparison.comparisons
    )


def _is_masked(index: ModuleIndex, statement: cst.CSTNode) -> bool:
    """The mixing statement reads a BOS mask, or a later statement of the same function masks
    the states it shifted (``masked_fill``, ``where``, ``mul_``, or ``x + gate * prev * not_bos``
    after ``prev = F.pad(x, (0, 0, 1, 0))[:, :-1]``: the #1851/#1855 fix written in two steps)."""
    scope = index.enclosing_function(statement) or index.parsed.module
    masks = _mask_names(index, scope)
    used = {n.value for n in value_names(statement)}
    if used & masks or any(BOS_WORDS.search(n) for n in used):
        return True
    shifted = set(target_names(statement))
    if not shifted or not masks:
        return False
    function = index.enclosing_function(statement)
    later: list[cst.CSTNode] = [
        call
        for call in nodes_within(index.calls, scope, index)
        if call_tail(call) in {"masked_fill", "masked_fill_", "where", "mul_"}
    ]
    later += [
        binop
        for binop in nodes_within(index.binops, scope, index)
        if isinstance(binop.operator, cst.Multiply) and index.enclosing_function(binop) is function
    ]
    for node in (n for n in later if index.line(n) >= index.line(statement)):
        names = {n.value for n in value_names(node)}
        if names & masks and names & shifted:
            return True
    return False


def _isolation_evidence(indexes: list[ModuleIndex]) -> tuple[ModuleIndex, cst.CSTNode, str] | None:
    for index in indexes:
        if not _ISOLATION.search(index.parsed.source.text):
            continue
        for node in index.all_nodes():
            if isinstance(node, cst.Name) and _ISOLATION.search(node.value):
                return index, node, node.value
    return None


def find_unmasked_smear(indexes: list[ModuleIndex]) -> list[Hit]:
    evidence = _isolation_evidence(indexes)
    hits: list[Hit] = []
    for index in indexes:
        for statement, expr in _smear_sites(index):
            if _is_masked(index, statement):
                continue
            shown = index.code(expr, 70)
            path = [step(index, expr, "previous token mixed in without a document mask")]
            if evidence is None:
                message = (
                    f"previous-token mixing `{shown}` has no BOS mask; the model does not otherwise "
                    "isolate documents, so this is noted only (contested rule, issue #1988)"
                )
            else:
                where_index, where_node, word = evidence
                message = (
                    f"previous-token mixing `{shown}` has no BOS mask, so the last token of one document leaks "
                    f"into the first position of the next, while the model isolates documents elsewhere "
                    f"(`{word}` at {where_index.name}:{where_index.line(where_node)})"
                )
                path.append(step(where_index, where_node, f"documents are otherwise isolated ({word})"))
            when = "no-document-isolation" if evidence is None else None
            hits.append(Hit(rule="PG203", index=index, node=statement, message=message, path=tuple(path), when=when))
    return hits
