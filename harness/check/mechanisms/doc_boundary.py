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

# ---- vocabularies (whole words, harness/check/words.py) ------------------------------------
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


def _slice_kind(subscript: cst.Subscript) -> str | None:
    """``x[:, 1:]`` → "tail"; ``x[:, :-1]`` → "head"; anything else → None."""
    element = subscript.slice[-1].slice if subscript.slice else None
    if not isinstance(element, cst.Slice) or element.step is not None:
        return None
    if element.upper is None and element.lower is not None and number_value(element.lower) == 1:
        return "tail"
    if element.lower is None and element.upper is not None and number_value(element.upper) == -1:
        return "head"
    return None


def _shifted_parts(expr: cst.CSTNode, kind: str) -> list[cst.Subscript]:
    return [n for n in walk(expr) if isinstance(n, cst.Subscript) and _slice_kind(n) == kind]


def _is_hash_arithmetic(expr: cst.CSTNode) -> bool:
    """Token-id hashing (BigramHash) uses ^, %, << or large integer multipliers, not gates."""
    for node in walk(expr):
        if isinstance(node, cst.BinaryOperation):
            if isinstance(node.operator, (cst.BitXor, cst.Modulo, cst.LeftShift, cst.BitAnd)):
                return True
            if isinstance(node.operator, cst.Multiply):
                for side in (node.left, node.right):
                    value = number_value(side)
                    if isinstance(value, int) and abs(value) >= 2:
                        return True
    return False


def _smear_sites(index: ModuleIndex) -> list[tuple[cst.CSTNode, cst.CSTNode]]:
    """(statement, mixing expression) pairs that add a token's predecessor into it."""
    sites: list[tuple[cst.CSTNode, cst.CSTNode]] = []
    for binop in index.binops:
        if not isinstance(binop.operator, cst.Add):
            continue
        for current, previous in ((binop.left, binop.right), (binop.right, binop.left)):
            if isinstance(current, cst.Subscript) and _slice_kind(current) == "tail":
                base = index.code(current.value)
                if any(index.code(p.value) == base for p in _shifted_parts(previous, "head")):
                    sites.append((index.enclosing_statement(binop), binop))
                    break
    for statement in index.assigns:
        if isinstance(statement, cst.AugAssign) and isinstance(statement.operator, cst.AddAssign):
            target = statement.target
            if isinstance(target, cst.Subscript) and _slice_kind(target) == "tail":
                base = index.code(target.value)
                if any(index.code(p.value) == base for p in _shifted_parts(statement.value, "head")):
                    sites.append((statement, statement))
    for call in index.calls:
        tail = call_tail(call)
        args = [a.value for a in call.args]
        if tail == "lerp" and len(args) >= 2 and isinstance(args[0], cst.Subscript) and _slice_kind(args[0]) == "tail":
            if isinstance(args[1], cst.Subscript) and _slice_kind(args[1]) == "head":
                sites.append((index.enclosing_statement(call), call))
        if tail == "roll" and _rolls_by_one(call):
            sites.append((index.enclosing_statement(call), call))
        if tail == "cat" and call.args and isinstance(call.args[0].value, (cst.List, cst.Tuple)):
            elements = call.args[0].value.elements
            last = elements[-1].value if len(elements) >= 2 else None
            if isinstance(last, cst.Subscript) and _slice_kind(last) == "head":
                sites.append((index.enclosing_statement(call), call))
        if tail == "pad" and _pads_front_of_sequence(call):
            parent = index.parent(call)
            if isinstance(parent, cst.Subscript) and _slice_kind(parent) == "head":
                sites.append((index.enclosing_statement(call), call))
    return [(s, e) for s, e in sites if not _is_hash_arithmetic(e) and not _shifts_token_ids(index, e)]


_TOKEN_IDS = re.compile(r"(^|_)(ids|idx|tokens?|toks)$", re.IGNORECASE)


def _shifts_token_ids(index: ModuleIndex, expr: cst.CSTNode) -> bool:
    """Shifting token ids (for hashed n-gram inputs) is not mixing hidden states."""
    bases = [n.value for n in walk(expr) if isinstance(n, cst.Subscript)]
    return any(_TOKEN_IDS.search(index.code(b)) for b in bases)


def _rolls_by_one(call: cst.Call) -> bool:
    positional = [a.value for a in call.args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    shift = keywords.get("shifts", positional[1] if len(positional) > 1 else None)
    return shift is not None and number_value(shift) == 1


def _pads_front_of_sequence(call: cst.Call) -> bool:
    positional = [a.value for a in call.args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    pad = keywords.get("pad", positional[1] if len(positional) > 1 else None)
    if not isinstance(pad, (cst.Tuple, cst.List)):
        return False
    values = [number_value(e.value) for e in pad.elements]
    return values in ([0, 0, 1, 0], [1, 0])


def _mask_names(index: ModuleIndex, function: cst.CSTNode) -> set[str]:
    """Names in ``function`` that hold (or are derived from) a BOS/document mask."""
    masks = (
        {p.name.value for p in function.params.params if BOS_WORDS.search(p.name.value)}
        if isinstance(function, cst.FunctionDef)
        else set()
    )
    params = {p.name.value for p in function.params.params} if isinstance(function, cst.FunctionDef) else set()
    assigns = nodes_within(index.assigns, function, index)
    for _ in range(3):
        for statement in assigns:
            value = assigned_value(statement)
            if value is None:
                continue
            if not _only_mask_operations(value):
                continue
            names = {n.value for n in value_names(value)}
            compares_ids = any(
                isinstance(n, cst.Comparison) and any(_ID_WORDS.search(v.value) for v in value_names(n))
                for n in walk(value)
            )
            compares_ids = compares_ids or any(
                isinstance(n, cst.Comparison) and _literal_id_test(n, params) for n in walk(value)
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


_MASK_METHODS = {
    "unsqueeze",
    "float",
    "to",
    "type_as",
    "bool",
    "logical_not",
    "view",
    "reshape",
    "expand",
    "half",
    "bfloat16",
    "eq",
    "ne",
    "int",
    "long",
    "expand_as",
    "masked_fill",
    "where",
    "cumsum",
    "any",
}


def _only_mask_operations(value: cst.CSTNode) -> bool:
    """Masks are built by comparisons, casts and reshapes, never by model calls: keeps
    ``x = block(x, cu_seqlens)`` from counting as a mask because it mentions one."""
    return all(call_tail(n) in _MASK_METHODS for n in walk(value) if isinstance(n, cst.Call))


def _is_masked(index: ModuleIndex, statement: cst.CSTNode, expr: cst.CSTNode) -> bool:
    scope = index.enclosing_function(statement) or index.parsed.module
    masks = _mask_names(index, scope)
    used = {n.value for n in value_names(statement)}
    if used & masks or any(BOS_WORDS.search(n) for n in used):
        return True
    for follower in nodes_within(index.calls, scope, index):
        if call_tail(follower) in {"masked_fill", "masked_fill_", "where", "mul_"} and index.line(
            follower
        ) >= index.line(statement):
            names = {n.value for n in value_names(follower)}
            if names & masks and names & set(target_names(statement)):
                return True
    return _masked_by_later_product(index, scope, statement, masks)


def _masked_by_later_product(index: ModuleIndex, scope: cst.CSTNode, statement: cst.CSTNode, masks: set[str]) -> bool:
    """``prev = F.pad(x, (0, 0, 1, 0))[:, :-1]`` then ``x + gate * prev * not_bos``: the shifted
    states are multiplied by the BOS mask in a later statement of the same function — the
    #1851/#1855 fix written in two steps, so the mixing statement alone shows no mask."""
    shifted = set(target_names(statement))
    if not shifted or not masks:
        return False
    line = index.line(statement)
    for binop in nodes_within(index.binops, scope, index):
        if not isinstance(binop.operator, cst.Multiply) or index.line(binop) < line:
            continue
        if index.enclosing_function(binop) is not index.enclosing_function(statement):
            continue
        names = {n.value for n in value_names(binop)}
        if names & shifted and names & masks:
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
            if _is_masked(index, statement, expr):
                continue
            shown = index.code(expr, 70)
            if evidence is None:
                hits.append(
                    Hit(
                        rule="PG203",
                        when="no-document-isolation",
                        index=index,
                        node=statement,
                        message=(
                            f"previous-token mixing `{shown}` has no BOS mask; the model does not otherwise "
                            "isolate documents, so this is noted only (contested rule, issue #1988)"
                        ),
                        path=(step(index, expr, "previous token mixed in without a document mask"),),
                    )
                )
                continue
            where_index, where_node, word = evidence
            hits.append(
                Hit(
                    rule="PG203",
                    index=index,
                    node=statement,
                    message=(
                        f"previous-token mixing `{shown}` has no BOS mask, so the last token of one document leaks "
                        f"into the first position of the next, while the model isolates documents elsewhere "
                        f"(`{word}` at {where_index.name}:{where_index.line(where_node)})"
                    ),
                    path=(
                        step(index, expr, "previous token mixed in without a document mask"),
                        step(where_index, where_node, f"documents are otherwise isolated ({word})"),
                    ),
                )
            )
    return hits
