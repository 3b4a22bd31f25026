"""PG201: an eval-time table written with the target before that position is scored (C3 of
#1017, R-C3-SCORE-BEFORE-UPDATE).

Shape: inside the per-position loop, ``hint_tok[ctx] = toks[p]`` stores the realized token,
then ``h = hint_tok[ctx]`` reads the same cell to tilt the row, and only afterwards
``loss -= logp[toks[p]]`` scores position ``p`` — the target has reached its own prediction
through the cache. #1514's legal n-gram tilt does the same update *after* the score
accumulation, and that order stays quiet. Per-position output arrays (``nll[i] = …``,
indexed by the loop position) are not caches and are left out.
"""

from __future__ import annotations

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, number_value, target_names
from harness.check.words import any_word, last_word

from .hit import Hit, step
from .lookups import BYTE_WORDS
from .targets import TargetInfo, value_names

# A running score (``nll_sum``, ``total_bits``) and a table of model outputs (``tok_lp``,
# ``log_probs``); ``prob`` no longer matches probe/problem, ``lp`` no longer mlp.
_SCORE_ACCUMULATOR = any_word("*(loss|nll|score)*", "(bits|nats)*", "*(bits|nats)")
_OUTPUT_TABLES = any_word(
    "*(loss|nll|score|logp)*", "bits*", "*bits", "log_prob*", "*probs?", "*probabilit*"
) | last_word("lps?")
_WHOLE = 1 << 20  # compare whole expressions, not the shortened text messages show


def find_update_before_score(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """One finding per loop whose body writes the target into a table cell that is read back
    for the prediction before the position's score is accumulated."""
    hits: list[Hit] = []
    flagged: set[int] = set()
    assigns = nodes_within(index.assigns, info.function, index)
    for score in assigns:
        if not _is_score_accumulation(score, info):
            continue
        loop = next((a for a in index.ancestors(score) if isinstance(a, (cst.For, cst.While))), None)
        if loop is None or id(loop) in flagged or not _inside(index, loop, info.function):
            continue
        found = _write_then_read(index, info, loop, score)
        if found is None:
            continue
        flagged.add(id(loop))
        write, read = found
        hits.append(
            Hit(
                rule="PG201",
                index=index,
                node=write,
                message=(
                    f"`{index.code(write, 60)}` writes the target token of the scored position into the table "
                    f"read at line {index.line(read)} for that same position's prediction, before its score at "
                    f"line {index.line(score)} (the table may be updated with a token only after it is scored)"
                ),
                path=(
                    step(index, write, "table cell written with the target token"),
                    step(index, read, "same cell read to form the prediction"),
                    step(index, score, "the position is scored only afterwards"),
                ),
            )
        )
    return hits


def _inside(index: ModuleIndex, node: cst.CSTNode, function: cst.FunctionDef) -> bool:
    return index.enclosing_function(node) is function


def _is_score_accumulation(statement: cst.CSTNode, info: TargetInfo) -> bool:
    """``loss_sum -= float(logp[toks[p]])``: an accumulated score that reads the target."""
    if not isinstance(statement, cst.AugAssign) or not isinstance(statement.target, cst.Name):
        return False
    return bool(_SCORE_ACCUMULATOR.search(statement.target.value)) and info.mentions(statement.value)


def _start(index: ModuleIndex, node: cst.CSTNode) -> int:
    where = index.parsed.positions.offsets(node)
    return where[0] if where is not None else -1


def _write_then_read(
    index: ModuleIndex, info: TargetInfo, loop: cst.CSTNode, score: cst.CSTNode
) -> tuple[cst.CSTNode, cst.CSTNode] | None:
    scored_at = _start(index, score)
    positions = _position_names(index, loop)
    statements = sorted(nodes_within(index.assigns, loop, index), key=lambda s: _start(index, s))
    for write in statements:
        if _start(index, write) >= scored_at:
            break
        for target in _subscript_targets(write):
            if len(target.slice) != 1 or not isinstance(target.slice[0].slice, cst.Index):
                continue
            key = target.slice[0].slice.value
            table = index.code(target.value, _WHOLE)
            if BYTE_WORDS.search(table) or _OUTPUT_TABLES.search(table) or _is_position(key, positions):
                continue
            value = assigned_value(write)
            if not (info.mentions(key) or (value is not None and info.mentions(value))):
                continue
            read = _read_back(index, statements, write, scored_at, table, key)
            if read is not None:
                return write, read
    return None


def _subscript_targets(statement: cst.CSTNode) -> list[cst.Subscript]:
    if isinstance(statement, cst.Assign):
        targets = [t.target for t in statement.targets]
    elif isinstance(statement, (cst.AugAssign, cst.AnnAssign)):
        targets = [statement.target]
    else:
        return []
    return [t for t in targets if isinstance(t, cst.Subscript)]


def _read_back(
    index: ModuleIndex,
    statements: list[cst.CSTNode],
    write: cst.CSTNode,
    scored_at: int,
    table: str,
    key_node: cst.CSTNode,
) -> cst.CSTNode | None:
    """The first plain read ``table[key]`` after ``write`` and before the score, with the key
    not rebound in between (the same cell of the same position)."""
    key = index.code(key_node, _WHOLE)
    key_names = {n.value for n in value_names(key_node)}
    written_at = _start(index, write)
    for statement in statements:
        start = _start(index, statement)
        if start <= written_at or start >= scored_at:
            continue
        if set(target_names(statement)) & key_names and not _subscript_targets(statement):
            return None  # the key now names another cell
        if _subscript_targets(statement):
            continue  # further writes (``cnt[ctx] = 1``) are part of the same update
        value = assigned_value(statement)
        for node in walk(value) if value is not None else ():
            if (
                isinstance(node, cst.Subscript)
                and len(node.slice) == 1
                and index.code(node.value, _WHOLE) == table
                and index.code(node.slice[0].slice, _WHOLE) == key
            ):
                return statement
    return None


def _position_names(index: ModuleIndex, loop: cst.CSTNode) -> set[str]:
    """Loop variables of ``loop`` and the loops around it, and names computed from them and
    constants (``p = i + 1``, ``j = base + i``): keys made of these index per-position outputs."""
    names: set[str] = set()
    for node in [loop, *index.ancestors(loop)]:
        if isinstance(node, cst.For):
            names |= {n.value for n in value_names(node.target)}
    for statement in nodes_within(index.assigns, loop, index):
        value = assigned_value(statement)
        if isinstance(statement, cst.Assign) and value is not None and _is_position(value, names):
            names |= set(target_names(statement))
    return names


def _is_position(expr: cst.CSTNode, positions: set[str]) -> bool:
    """An expression of position names and integer constants only (``i``, ``p - 1``)."""
    if isinstance(expr, cst.Name):
        return expr.value in positions
    if number_value(expr) is not None:
        return True
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract, cst.Multiply)):
        return _is_position(expr.left, positions) and _is_position(expr.right, positions)
    return False
