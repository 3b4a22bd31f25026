"""PG201: an eval-time table written with the target before that position is scored (C3 of
#1017, R-C3-SCORE-BEFORE-UPDATE): in the per-position loop ``hint_tok[ctx] = toks[p]`` stores the
realized token, ``h = hint_tok[ctx]`` reads it back to tilt the row, and only then
``loss -= logp[toks[p]]`` scores ``p``. #1514's legal n-gram tilt updates *after* the score and
stays quiet; per-position output arrays (``nll[i] = …``, indexed by the loop position) are not caches.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assign_targets, assigned_value, number_value, target_names
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


def find_update_before_score(index: ModuleIndex, info: TargetInfo) -> Iterator[Hit]:
    """One finding per loop whose body writes the target into a table cell that is read back
    for the prediction before the position's score is accumulated."""
    flagged: set[int] = set()
    for score in nodes_within(index.assigns, info.function, index):
        if not _is_score_accumulation(score, info):
            continue
        loop = next((a for a in index.ancestors(score) if isinstance(a, (cst.For, cst.While))), None)
        if loop is None or id(loop) in flagged or index.enclosing_function(loop) is not info.function:
            continue
        found = _write_then_read(index, info, loop, score)
        if found is None:
            continue
        flagged.add(id(loop))
        write, read = found
        yield Hit(
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


def _is_score_accumulation(statement: cst.CSTNode, info: TargetInfo) -> bool:
    """``loss_sum -= float(logp[toks[p]])``: an accumulated score that reads the target."""
    if not isinstance(statement, cst.AugAssign) or not isinstance(statement.target, cst.Name):
        return False
    return bool(_SCORE_ACCUMULATOR.search(statement.target.value)) and info.mentions(statement.value)


def _write_then_read(
    index: ModuleIndex, info: TargetInfo, loop: cst.CSTNode, score: cst.CSTNode
) -> tuple[cst.CSTNode, cst.CSTNode] | None:
    positions = _position_names(index, loop)
    statements = nodes_within(index.assigns, loop, index)  # in source order
    scored_at = next(place for place, statement in enumerate(statements) if statement is score)
    for place, write in enumerate(statements[:scored_at]):
        for target in _cell_stores(write):
            if len(target.slice) != 1 or not isinstance(target.slice[0].slice, cst.Index):
                continue
            key = target.slice[0].slice.value
            table = index.code(target.value, _WHOLE)
            if BYTE_WORDS.search(table) or _OUTPUT_TABLES.search(table) or _is_position(key, positions):
                continue
            value = assigned_value(write)
            if not (info.mentions(key) or (value is not None and info.mentions(value))):
                continue
            read = _read_back(index, statements[place + 1 : scored_at], table, key)
            if read is not None:
                return write, read
    return None


def _cell_stores(statement: cst.CSTNode) -> list[cst.Subscript]:
    return [t for t in assign_targets(statement) if isinstance(t, cst.Subscript)]


def _read_back(index: ModuleIndex, between: list[cst.CSTNode], table: str, key_node: cst.CSTNode) -> cst.CSTNode | None:
    """The first plain read ``table[key]`` of the statements between the write and the score,
    with the key not rebound before it (the same cell of the same position)."""
    key = index.code(key_node, _WHOLE)
    key_names = {n.value for n in value_names(key_node)}
    for statement in between:
        if _cell_stores(statement):
            continue  # further writes (``cnt[ctx] = 1``) are part of the same update
        if set(target_names(statement)) & key_names:
            return None  # the key now names another cell
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
        if isinstance(statement, cst.Assign) and _is_position(statement.value, names):
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
