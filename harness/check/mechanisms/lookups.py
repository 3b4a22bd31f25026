"""Cache/count lookups and hash keys that involve the target token, per scoring function: C1
(target in the key or gate, PG201) and C2 (probability formed only at the realized token, PG202)
both show up as table reads whose key mentions the target. A causal cache legally inserts
``(context, target)`` *after* scoring, so only reads count, and a read that feeds a write to the
same table (``t[k] = t[k] + 1``) is an update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assign_targets, assigned_value, call_tail, number_value, target_names
from harness.check.words import any_word, last_word

from .targets import TargetInfo, identifiers, value_names

Mentions = Callable[[cst.CSTNode], bool]  # does an expression hold the key (or the target)?
T = TypeVar("T")

# ---- vocabularies (whole words, harness/check/words.py) ------------------------------------
# An eval-time cache or count table (``ngram_counts``, ``ctx_cnt``, ``bigramhash``, ``hits``).
# ``*gram*`` is the one glued entry: n-gram tables are named ``bigramhash``/``trigram3_keys``.
# ``count`` no longer matches accounting/discount, ``tab`` no longer stab.
CACHE_WORDS = any_word(
    "(count|cnt|cache|table|freq|ppm|hist)*", "*(counts?|cnts?|caches?|tables?|freqs?|hist)", "*gram*", "*buckets?*"
) | last_word("n?hits?", "tabs?")
# A byte-accounting LUT, never a cache (``base_bytes``, ``has_leading_space``); ``space`` no
# longer matches namespace/workspace/linspace.
BYTE_WORDS = any_word(
    "*bytes?*", "*bpb*", "leading*", "space*", "whitespace*", "*lspace", "boundary_lut", "piece_lens?"
)
# A hash multiplier (``x * PRIME``, ``h * _FNV_PRIME``, ``splitmix64``); ``mix`` no longer
# matches mixed/mixture/mixer, ``mult`` no longer multi/multiple.
_HASH_NAMES = any_word(
    "(prime|multiplier|seed|golden|fnv)*", "*(primes?|mults?|seeds?|fnv)", "*hash*", "*mix(0|1|32|64)?"
)
_EMBEDDING_CALL = any_word("emb", "embed", "embeds", "embedding", "embeddings")
# What a scored position adds to (``nll_sum += ...``); ``sum`` no longer matches resume/consume.
_SCORE_TARGET = any_word("*loss*", "*nll*", "*bits*", "*score*", "*nats*", "sum*", "*sum", "*sums")
_WRITE_CALLS = {"at", "index_add_", "scatter_add_", "index_put_", "scatter_", "put_", "add_", "update", "setdefault"}


@dataclass
class LookupFacts:
    """The target-keyed reads of one scoring function."""

    key_reads: list[tuple[cst.CSTNode, cst.CSTNode]]  # (hash expression with the target, its read)
    cache_names: dict[str, cst.CSTNode]  # name → the target-keyed cache read it holds


def _product_sides(node: cst.CSTNode) -> tuple[cst.BaseExpression, ...]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
        return node.left, node.right
    return ()


def _int_of_at_least(node: cst.CSTNode, size: int) -> bool:
    value = number_value(node)
    return isinstance(value, int) and abs(value) >= size


def is_hash_mix(node: cst.CSTNode) -> bool:
    """``a ^ b``, ``x * 1000003``, ``x * PRIME``, ``x << 17``: operations that build hash keys."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.BitXor, cst.LeftShift)):
        return True
    return any(
        _int_of_at_least(side, 1000)
        or (
            isinstance(side, (cst.Name, cst.Attribute, cst.Subscript))
            and any(_HASH_NAMES.search(n.value) for n in value_names(side))
        )
        for side in _product_sides(node)
    )


def _radix_scaled(node: cst.CSTNode) -> bool:
    """``ctx * 31``, ``h * P``, ``h * vocab``, ``h << 8``: a value shifted to make room for
    another token (a polynomial/rolling hash step, or a flat 2-D index)."""
    return is_hash_mix(node) or any(
        _int_of_at_least(side, 2) or isinstance(side, (cst.Name, cst.Attribute)) for side in _product_sides(node)
    )


def composes_with_target(node: cst.CSTNode, info: TargetInfo) -> bool:
    """A key that appends the target to a context: ``ctx * 31 + tgt``, ``(h << 8) | t``, ``t + h * P``
    (#982): #779's xor key is one spelling of the same (context, target) bucket key (PG201). A
    tuple ``(ctx, tgt)`` indexes an exact counter (the #1026 dict blend, PG202), so it only makes
    its name a key for the cache lookups. Exactly one side carries the target, so BigramHash of
    input tokens never matches."""
    if isinstance(node, cst.Tuple):
        flags = [info.mentions(element.value) for element in node.elements]
        return len(flags) >= 2 and any(flags) and not all(flags)
    if not isinstance(node, cst.BinaryOperation) or not isinstance(node.operator, (cst.Add, cst.BitOr)):
        return False
    return any(
        _radix_scaled(context) and info.mentions(target) and not info.mentions(context)
        for context, target in ((node.left, node.right), (node.right, node.left))
    )


def _outermost_hash(index: ModuleIndex, node: cst.BinaryOperation) -> bool:
    parent = index.parent(node)
    while isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation)):
        if isinstance(parent, cst.BinaryOperation) and is_hash_mix(parent):
            return False
        parent = index.parent(parent)
    return True


def _is_store(index: ModuleIndex, subscript: cst.Subscript) -> bool:
    parent = index.parent(subscript)
    return isinstance(parent, cst.AssignTarget) or (isinstance(parent, cst.AugAssign) and parent.target is subscript)


def _writes_same_table(index: ModuleIndex, read: cst.CSTNode) -> bool:
    """``t[k] = t[k] + 1``, ``t[k] = max(t[k], v)`` or ``d[k] = d.get(k, 0) + 1``: the read is
    part of an update (the dict spelling is how tuple-keyed causal caches count after scoring)."""
    if isinstance(read, cst.Subscript):
        base = index.code(read.value)
    elif isinstance(read, cst.Call) and isinstance(read.func, cst.Attribute):
        base = index.code(read.func.value)
    else:
        return False
    targets = assign_targets(index.enclosing_statement(read))
    return any(isinstance(t, cst.Subscript) and index.code(t.value) == base for t in targets)


def _read_sites(index: ModuleIndex, function: cst.FunctionDef, mentions: Mentions) -> list[cst.Subscript | cst.Call]:
    """Table reads (``T[key]``, ``T.get(key)``) in ``function`` whose key satisfies ``mentions``."""
    sites: list[cst.Subscript | cst.Call] = [
        s
        for s in nodes_within(index.subscripts, function, index)
        if not _is_store(index, s) and not _writes_same_table(index, s) and any(mentions(e.slice) for e in s.slice)
    ]
    return sites + [
        c
        for c in nodes_within(index.calls, function, index)
        if call_tail(c) == "get" and c.args and mentions(c.args[0].value) and not _writes_same_table(index, c)
    ]


def collect_lookups(index: ModuleIndex, info: TargetInfo) -> LookupFacts:
    function = info.function
    hashes = [
        b
        for b in nodes_within(index.binops, function, index)
        if is_hash_mix(b) and _outermost_hash(index, b) and info.mentions(b)
    ]
    hashes += [c for c in nodes_within(index.calls, function, index) if call_tail(c) == "hash" and info.mentions(c)]
    assigns = nodes_within(index.assigns, function, index)
    composed = _composed_keys(index, info, assigns, {id(h) for h in hashes})
    composed_ids = {id(c) for c in composed}  # keys built by ``ctx * P + t`` / ``(ctx, t)``
    hashes += composed
    key_names: dict[str, cst.CSTNode] = {}  # name → the hash expression it holds
    for expr in hashes:
        statement = index.enclosing_statement(expr)
        if isinstance(statement, (cst.Assign, cst.AnnAssign)) and not _inside_write_target(index, expr):
            for name in target_names(statement):
                key_names.setdefault(name, expr)
    _propagate_names(key_names, assigns)
    hash_by_id = {id(h): h for h in hashes}

    def mentions_key(expr: cst.CSTNode) -> bool:
        return any(n.value in key_names for n in value_names(expr)) or any(id(n) in hash_by_id for n in walk(expr))

    counted = _counted_tables(index, function)
    # ``self.bigram_emb(pair)`` / ``F.embedding(pair, w)``: with the target in the key, the BigramHash
    # idiom (research H.6a) shows the model the token it is scored on (``(input_ids * P) ^ (target_ids * Q)``)
    embedded: list[cst.Subscript | cst.Call] = [
        c
        for c in nodes_within(index.calls, function, index)
        if _EMBEDDING_CALL.search(call_tail(c)) and any(a.keyword is None and mentions_key(a.value) for a in c.args)
    ]
    embedded_ids = {id(site) for site in embedded}
    key_reads: list[tuple[cst.CSTNode, cst.CSTNode]] = []
    for site in _read_sites(index, function, mentions_key) + embedded:
        key_expr = next((hash_by_id[id(n)] for n in walk(site) if id(n) in hash_by_id), None)
        if key_expr is None:
            key_expr = next((key_names[n.value] for n in value_names(site) if n.value in key_names), None)
        if key_expr is None or _inside_write_target(index, site) or _after_score(index, site):
            continue
        if isinstance(key_expr, cst.Tuple):
            continue  # an exact ``(ctx, tgt)`` counter: the #1026 C2 shape, reported as PG202 below
        if id(key_expr) in composed_ids and id(site) not in embedded_ids and not _reads_cache(index, site, counted):
            continue  # ``logp_flat[i * V + tgt]`` selects the scored entry; only count tables are keyed
        key_reads.append((key_expr, site))
    cache_names: dict[str, cst.CSTNode] = {}
    for site in _read_sites(index, function, lambda expr: info.mentions(expr) or mentions_key(expr)):
        if not _reads_cache(index, site, counted):
            continue
        statement = index.enclosing_statement(site)
        if isinstance(statement, (cst.Assign, cst.AnnAssign)):
            for name in target_names(statement):
                cache_names.setdefault(name, site)
    _propagate_names(cache_names, assigns, carriers_only=True)
    return LookupFacts(key_reads, cache_names)


def _reads_cache(index: ModuleIndex, site: cst.Subscript | cst.Call, counted: set[str]) -> bool:
    """Does the read site read an eval-time cache (named like one, or counted in this function),
    not a byte-accounting LUT?"""
    base = site.value if isinstance(site, cst.Subscript) else site.func
    base_names = set(identifiers(base))  # ``self.full_tables[n][key]``: the member names the table (#982)
    table = base.value if isinstance(base, cst.Attribute) and not isinstance(site, cst.Subscript) else base
    return not any(BYTE_WORDS.search(n) for n in base_names) and (
        any(CACHE_WORDS.search(n) for n in base_names) or index.code(table) in counted
    )


def _composed_keys(
    index: ModuleIndex, info: TargetInfo, assigns: list[cst.CSTNode], hash_ids: set[int]
) -> list[cst.CSTNode]:
    """Outermost ``ctx * P + t`` / ``(ctx, t)`` keys of the function that no xor/multiplicative
    hash already covers: in assignments, subscripts and ``.get`` arguments."""
    candidates: list[cst.CSTNode] = list(nodes_within(index.binops, info.function, index))
    candidates += [  # ``key = (ctx, tgt)``; ``tgt, prev = y[s:], x[s:]`` unpacks
        s.value
        for s in assigns
        if isinstance(s, cst.Assign)
        and isinstance(s.value, cst.Tuple)
        and all(isinstance(t.target, cst.Name) for t in s.targets)
    ]
    for subscript in nodes_within(index.subscripts, info.function, index):
        candidates += [e.slice.value for e in subscript.slice if isinstance(e.slice, cst.Index)]
    candidates += [
        c.args[0].value for c in nodes_within(index.calls, info.function, index) if call_tail(c) == "get" and c.args
    ]
    found: dict[int, cst.CSTNode] = {}
    for node in candidates:
        if id(node) in found or not composes_with_target(node, info):
            continue
        if not any(id(a) in hash_ids or id(a) in found for a in index.ancestors(node)):
            found[id(node)] = node
    return [n for n in found.values() if not any(id(a) in found for a in index.ancestors(n))]


def _counted_tables(index: ModuleIndex, function: cst.FunctionDef) -> set[str]:
    """Tables incremented in this function (``c[k, t] += 1``): whatever their (possibly
    one-letter, minified) name, they are eval-time count caches, so a read of them at the
    target is a cache lookup, not the model's probability (#1026, #659)."""
    tables: set[str] = set()
    for statement in nodes_within(index.assigns, function, index):
        stored, value = assign_targets(statement), assigned_value(statement)
        if len(stored) != 1 or not isinstance(stored[0], cst.Subscript):
            continue
        table = index.code(stored[0].value)
        if isinstance(statement, cst.AugAssign):
            if isinstance(statement.operator, cst.AddAssign) and number_value(statement.value) is not None:
                tables.add(table)
        elif (  # ``c[key] = c.get(key, 0) + 1``: the dict form of the same increment
            isinstance(statement, cst.Assign)
            and isinstance(value, cst.BinaryOperation)
            and isinstance(value.operator, cst.Add)
            and number_value(value.right) is not None
            and isinstance(value.left, cst.Call)
            and call_tail(value.left) == "get"
            and isinstance(value.left.func, cst.Attribute)
            and index.code(value.left.func.value) == table
        ):
            tables.add(table)
    return tables


def _after_score(index: ModuleIndex, site: cst.CSTNode) -> bool:
    """A read placed after this position's score was accumulated, in the same loop body, is
    part of the cache update (e.g. insert-if-absent), not of the prediction."""
    loop = next((a for a in index.ancestors(site) if isinstance(a, (cst.For, cst.While))), None)
    if loop is None:
        return False
    return any(
        isinstance(statement, cst.AugAssign)
        and index.line(statement) < index.line(site)
        and any(_SCORE_TARGET.search(n) for n in target_names(statement))
        for statement in nodes_within(index.assigns, loop, index)
    )


def _inside_write_target(index: ModuleIndex, node: cst.CSTNode) -> bool:
    for ancestor in index.ancestors(node):
        if isinstance(ancestor, cst.AssignTarget):
            return True
        if isinstance(ancestor, cst.Call) and call_tail(ancestor) in _WRITE_CALLS:
            return True
        if isinstance(ancestor, (cst.SimpleStatementLine, cst.FunctionDef)):
            return False
    return False


def propagate_names(known: dict[str, T], assigns: list[cst.CSTNode], origin: Callable[[cst.CSTNode], T | None]) -> None:
    """The names a statement binds join ``known`` with what ``origin`` says of the statement
    (None: it carries nothing known), pass after pass until none joins (four at most)."""
    for _ in range(4):
        changed = False
        for statement in assigns:
            found = origin(statement)
            if found is None:
                continue
            for name in target_names(statement):
                if name not in known:
                    known[name] = found
                    changed = True
        if not changed:
            return


def _propagate_names(names: dict[str, cst.CSTNode], assigns: list[cst.CSTNode], carriers_only: bool = False) -> None:
    """Names computed from already-known names inherit their origin (``k2 = k & mask``)."""

    def origin(statement: cst.CSTNode) -> cst.CSTNode | None:
        value = assigned_value(statement)
        if isinstance(statement, cst.AugAssign) or value is None or (carriers_only and not _is_plain_carry(value)):
            return None
        return next((names[n.value] for n in value_names(value) if n.value in names), None)

    propagate_names(names, assigns, origin)


def _is_plain_carry(value: cst.CSTNode) -> bool:
    """Values that still *are* the looked-up count (cast, index, +constant), not a new quantity."""
    if isinstance(value, (cst.Name, cst.Subscript, cst.Attribute)):
        return True
    if isinstance(value, cst.Call):
        return call_tail(value) in {"float", "int", "astype", "to", "item", "double", "maximum", "clip", "clamp", "max"}
    return isinstance(value, cst.BinaryOperation) and isinstance(value.operator, (cst.Add, cst.Subtract))
