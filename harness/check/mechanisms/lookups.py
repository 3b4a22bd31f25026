"""Cache/count lookups and hash keys that involve the target token, per scoring function.

Why: both C1 (target in the key or gate, PG201) and C2 (probability formed only at the
realized token, PG202) show up as table reads whose key mentions the target. Writes are
different — a causal cache legally inserts ``(context, target)`` *after* scoring — so only
reads count, and a read that feeds a write to the same table (``t[k] = t[k] + 1``) is an
update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, number_value, target_names
from harness.check.words import any_word, last_word

from .targets import TargetInfo, value_names

Mentions = Callable[[cst.CSTNode], bool]  # does an expression hold the key (or the target)?

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
    """Target-keyed hash expressions and reads of one scoring function."""

    key_names: dict[str, cst.CSTNode] = field(default_factory=dict)  # name → hash expression
    key_reads: list[tuple[cst.CSTNode, cst.CSTNode]] = field(default_factory=list)  # (hash expr, read)
    cache_names: dict[str, cst.CSTNode] = field(default_factory=dict)  # name → target-keyed read
    composed: set[int] = field(default_factory=set)  # ids of keys built by ``ctx * P + t`` / ``(ctx, t)``


def is_hash_mix(node: cst.CSTNode) -> bool:
    """``a ^ b``, ``x * 1000003``, ``x * PRIME``, ``x << 17``: operations that build hash keys."""
    if not isinstance(node, cst.BinaryOperation):
        return False
    if isinstance(node.operator, (cst.BitXor, cst.LeftShift)):
        return True
    if isinstance(node.operator, cst.Multiply):
        for side in (node.left, node.right):
            value = number_value(side)
            if isinstance(value, int) and abs(value) >= 1000:
                return True
            if isinstance(side, (cst.Name, cst.Attribute, cst.Subscript)) and any(
                _HASH_NAMES.search(n.value) for n in value_names(side)
            ):
                return True
    return False


def _radix_scaled(node: cst.CSTNode) -> bool:
    """``ctx * 31``, ``h * P``, ``h * vocab``, ``h << 8``: a value shifted to make room for
    another token (a polynomial/rolling hash step, or a flat 2-D index)."""
    if is_hash_mix(node):
        return True
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
        for side in (node.left, node.right):
            value = number_value(side)
            if isinstance(value, int) and abs(value) >= 2:
                return True
            if isinstance(side, (cst.Name, cst.Attribute)):
                return True
    return False


def composes_with_target(node: cst.CSTNode, info: TargetInfo) -> bool:
    """A key that appends the target to a context: ``ctx * 31 + tgt``, ``(h << 8) | t``,
    ``t + h * P`` (#982's polynomial pair key), or a tuple ``(ctx, tgt)`` used as a dict key.

    Why beside ``is_hash_mix``: #779's xor key is only one spelling; the arithmetic spellings
    hash the same (context, target) pair into a bucket table read for the realized token's
    probability (PG201). A tuple key indexes an exact counter instead — the #1026 dict blend,
    like ``counts[ctx, tgt]`` a C2 read at the target (PG202) — so it only makes its name a
    key for the cache lookups. Exactly one side must carry the target and the other the
    context, so BigramHash of input tokens (no target) never matches."""
    if isinstance(node, cst.Tuple):
        flags = [info.mentions(element.value) for element in node.elements]
        return len(flags) >= 2 and any(flags) and not all(flags)
    if not isinstance(node, cst.BinaryOperation) or not isinstance(node.operator, (cst.Add, cst.BitOr)):
        return False
    for context, target in ((node.left, node.right), (node.right, node.left)):
        if _radix_scaled(context) and info.mentions(target) and not info.mentions(context):
            return True
    return False


def _outermost_hash(index: ModuleIndex, node: cst.BinaryOperation) -> bool:
    parent = index.parent(node)
    while isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation)) or (
        parent is not None and type(parent).__name__ in {"LeftParen", "RightParen"}
    ):
        if isinstance(parent, cst.BinaryOperation) and is_hash_mix(parent):
            return False
        parent = index.parent(parent)
    return True


def _is_store(index: ModuleIndex, subscript: cst.Subscript) -> bool:
    parent = index.parent(subscript)
    if isinstance(parent, cst.AssignTarget):
        return True
    if isinstance(parent, cst.AugAssign) and parent.target is subscript:
        return True
    return False


def _writes_same_table(index: ModuleIndex, read: cst.CSTNode) -> bool:
    """``t[k] = t[k] + 1``, ``t[k] = max(t[k], v)`` or ``d[k] = d.get(k, 0) + 1``: the read is
    part of an update (the dict spelling is how tuple-keyed causal caches count after scoring)."""
    statement = index.enclosing_statement(read)
    if isinstance(read, cst.Subscript):
        base = index.code(read.value)
    elif isinstance(read, cst.Call) and isinstance(read.func, cst.Attribute):
        base = index.code(read.func.value)
    else:
        return False
    if isinstance(statement, (cst.Assign, cst.AugAssign)):
        targets = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else [statement.target]
        for target in targets:
            if isinstance(target, cst.Subscript) and index.code(target.value) == base:
                return True
    return False


def _read_sites(index: ModuleIndex, function: cst.FunctionDef, mentions: Mentions) -> list[cst.Subscript | cst.Call]:
    """Table reads (``T[key]``, ``T.get(key)``) in ``function`` whose key satisfies ``mentions``."""
    sites: list[cst.Subscript | cst.Call] = []
    for subscript in nodes_within(index.subscripts, function, index):
        if _is_store(index, subscript) or _writes_same_table(index, subscript):
            continue
        if any(mentions(element.slice) for element in subscript.slice):
            sites.append(subscript)
    for call in nodes_within(index.calls, function, index):
        if (
            call_tail(call) == "get"
            and call.args
            and mentions(call.args[0].value)
            and not _writes_same_table(index, call)
        ):
            sites.append(call)
    return sites


def _embedding_reads(
    index: ModuleIndex, function: cst.FunctionDef, mentions: Mentions
) -> list[cst.Subscript | cst.Call]:
    """``self.bigram_emb(pair)`` / ``F.embedding(pair, w)``: a hashed key looked up in an
    embedding table feeds the model's own activations. With the target in the key this is the
    BigramHash idiom (research H.6a) gone wrong — ``(input_ids * P) ^ (target_ids * Q)`` in
    ``forward(self, input_ids, target_ids)`` shows the model the token it is scored on (C1)."""
    sites: list[cst.Subscript | cst.Call] = []
    for call in nodes_within(index.calls, function, index):
        if _EMBEDDING_CALL.search(call_tail(call)) and any(a.keyword is None and mentions(a.value) for a in call.args):
            sites.append(call)
    return sites


def collect_lookups(index: ModuleIndex, info: TargetInfo) -> LookupFacts:
    facts = LookupFacts()
    function = info.function
    hashes = [
        b
        for b in nodes_within(index.binops, function, index)
        if is_hash_mix(b) and _outermost_hash(index, b) and info.mentions(b)
    ]
    hashes += [c for c in nodes_within(index.calls, function, index) if call_tail(c) == "hash" and info.mentions(c)]
    assigns = nodes_within(index.assigns, function, index)
    composed = _composed_keys(index, info, assigns, {id(h) for h in hashes})
    facts.composed = {id(c) for c in composed}
    hashes += composed
    for expr in hashes:
        statement = index.enclosing_statement(expr)
        if isinstance(statement, (cst.Assign, cst.AnnAssign)) and not _inside_write_target(index, expr):
            for name in target_names(statement):
                facts.key_names.setdefault(name, expr)
    _propagate_names(facts.key_names, assigns)
    hash_ids = {id(h) for h in hashes}

    def mentions_key(expr: cst.CSTNode) -> bool:
        if any(n.value in facts.key_names for n in value_names(expr)):
            return True
        return any(id(node) in hash_ids for node in walk(expr))

    counted = _counted_tables(index, function)
    embedded = _embedding_reads(index, function, mentions_key)
    embedded_ids = {id(site) for site in embedded}
    for site in _read_sites(index, function, mentions_key) + embedded:
        key_expr = _key_expr_for(site, facts, hashes)
        if key_expr is None or _inside_write_target(index, site) or _after_score(index, site):
            continue
        if isinstance(key_expr, cst.Tuple):
            continue  # an exact ``(ctx, tgt)`` counter: the #1026 C2 shape, reported as PG202 below
        if (
            id(key_expr) in facts.composed
            and id(site) not in embedded_ids
            and _cache_table(index, site, counted) is None
        ):
            continue  # ``logp_flat[i * V + tgt]`` selects the scored entry; only count tables are keyed
        facts.key_reads.append((key_expr, site))

    def mentions_target_or_key(expr: cst.CSTNode) -> bool:
        return info.mentions(expr) or mentions_key(expr)

    for site in _read_sites(index, function, mentions_target_or_key):
        if _cache_table(index, site, counted) is None:
            continue
        statement = index.enclosing_statement(site)
        if isinstance(statement, (cst.Assign, cst.AnnAssign)):
            for name in target_names(statement):
                facts.cache_names.setdefault(name, site)
    _propagate_names(facts.cache_names, assigns, carriers_only=True)
    return facts


def _cache_table(index: ModuleIndex, site: cst.Subscript | cst.Call, counted: set[str]) -> cst.CSTNode | None:
    """The table a read site reads when it is an eval-time cache (named like one, or counted
    in this function); None for byte-accounting LUTs and everything else."""
    base = site.value if isinstance(site, cst.Subscript) else site.func
    base_names = {n.value for n in value_names(base)} | {
        n.attr.value for n in walk(base) if isinstance(n, cst.Attribute)
    }  # ``self.full_tables[n][key]``: the member names the table, one subscript down (#982)
    if any(BYTE_WORDS.search(n) for n in base_names):
        return None
    table = base.value if isinstance(base, cst.Attribute) and not isinstance(site, cst.Subscript) else base
    if not any(CACHE_WORDS.search(n) for n in base_names) and index.code(table) not in counted:
        return None
    return table


def _composed_keys(
    index: ModuleIndex, info: TargetInfo, assigns: list[cst.CSTNode], hash_ids: set[int]
) -> list[cst.CSTNode]:
    """Outermost ``ctx * P + t`` / ``(ctx, t)`` keys of the function that no xor/multiplicative
    hash already covers: in assignments, subscripts and ``.get`` arguments."""
    candidates: list[cst.CSTNode] = [
        b for b in nodes_within(index.binops, info.function, index) if composes_with_target(b, info)
    ]
    for statement in assigns:
        value = assigned_value(statement)
        if (
            isinstance(value, cst.Tuple)
            and isinstance(statement, cst.Assign)
            and all(isinstance(t.target, cst.Name) for t in statement.targets)
        ):
            candidates.append(value)  # ``key = (ctx, tgt)``; ``tgt, prev = y[s:], x[s:]`` unpacks
    for subscript in nodes_within(index.subscripts, info.function, index):
        candidates += [e.slice.value for e in subscript.slice if isinstance(e.slice, cst.Index)]
    for call in nodes_within(index.calls, info.function, index):
        if call_tail(call) == "get" and call.args:
            candidates.append(call.args[0].value)
    found: list[cst.CSTNode] = []
    ids: set[int] = set()
    for node in candidates:
        if id(node) in ids or not composes_with_target(node, info):
            continue
        if any(id(a) in hash_ids or id(a) in ids for a in index.ancestors(node)):
            continue
        ids.add(id(node))
        found.append(node)
    return [n for n in found if not any(id(a) in ids for a in index.ancestors(n))]


def _counted_tables(index: ModuleIndex, function: cst.FunctionDef) -> set[str]:
    """Tables incremented in this function (``c[k, t] += 1``): whatever their (possibly
    one-letter, minified) name, they are eval-time count caches, so a read of them at the
    target is a cache lookup, not the model's probability (#1026, #659)."""
    tables: set[str] = set()
    for statement in nodes_within(index.assigns, function, index):
        if isinstance(statement, cst.AugAssign) and isinstance(statement.operator, cst.AddAssign):
            target = statement.target
            if isinstance(target, cst.Subscript) and isinstance(number_value(statement.value), (int, float)):
                tables.add(index.code(target.value))
        elif isinstance(statement, cst.Assign) and len(statement.targets) == 1:
            # ``c[key] = c.get(key, 0) + 1``: the dict form of the same increment
            target, value = statement.targets[0].target, statement.value
            if (
                isinstance(target, cst.Subscript)
                and isinstance(value, cst.BinaryOperation)
                and isinstance(value.operator, cst.Add)
                and isinstance(number_value(value.right), (int, float))
                and isinstance(value.left, cst.Call)
                and call_tail(value.left) == "get"
                and isinstance(value.left.func, cst.Attribute)
                and index.code(value.left.func.value) == index.code(target.value)
            ):
                tables.add(index.code(target.value))
    return tables


def _after_score(index: ModuleIndex, site: cst.CSTNode) -> bool:
    """A read placed after this position's score was accumulated, in the same loop body, is
    part of the cache update (e.g. insert-if-absent), not of the prediction."""
    loop = next((a for a in index.ancestors(site) if isinstance(a, (cst.For, cst.While))), None)
    if loop is None:
        return False
    line = index.line(site)
    for statement in nodes_within(index.assigns, loop, index):
        if isinstance(statement, cst.AugAssign) and index.line(statement) < line:
            if any(_SCORE_TARGET.search(n) for n in target_names(statement)):
                return True
    return False


def _inside_write_target(index: ModuleIndex, node: cst.CSTNode) -> bool:
    for ancestor in index.ancestors(node):
        if isinstance(ancestor, cst.AssignTarget):
            return True
        if isinstance(ancestor, cst.Call) and call_tail(ancestor) in _WRITE_CALLS:
            return True
        if isinstance(ancestor, (cst.SimpleStatementLine, cst.FunctionDef)):
            return False
    return False


def _key_expr_for(site: cst.CSTNode, facts: LookupFacts, hashes: list[cst.CSTNode]) -> cst.CSTNode | None:
    hash_ids = {id(h): h for h in hashes}
    for node in walk(site):
        if id(node) in hash_ids:
            return hash_ids[id(node)]
    for name in value_names(site):
        if name.value in facts.key_names:
            return facts.key_names[name.value]
    return None


def _propagate_names(names: dict[str, cst.CSTNode], assigns: list[cst.CSTNode], carriers_only: bool = False) -> None:
    """Names computed from already-known names inherit their origin (``k2 = k & mask``)."""
    for _ in range(4):
        changed = False
        for statement in assigns:
            if isinstance(statement, cst.AugAssign):
                continue
            value = assigned_value(statement)
            if value is None:
                continue
            if carriers_only and not _is_plain_carry(value):
                continue
            hit = next((n.value for n in value_names(value) if n.value in names), None)
            if hit is None:
                continue
            for name in target_names(statement):
                if name not in names:
                    names[name] = names[hit]
                    changed = True
        if not changed:
            return


def _is_plain_carry(value: cst.CSTNode) -> bool:
    """Values that still *are* the looked-up count (cast, index, +constant), not a new quantity."""
    if isinstance(value, (cst.Name, cst.Subscript, cst.Attribute)):
        return True
    if isinstance(value, cst.Call):
        return call_tail(value) in {"float", "int", "astype", "to", "item", "double", "maximum", "clip", "clamp", "max"}
    if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, (cst.Add, cst.Subtract)):
        return True
    return False
