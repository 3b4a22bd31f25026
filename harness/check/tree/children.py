"""The one notion of "syntactic child" every rule family walks, and the per-node memos.

Why not ``node.children``: libcst runs a full visitor per call, and the rule families ask for
children of most nodes three or four times; it dominated the run time on large submissions.
Children are read straight from the dataclass fields, leaving out trivia no rule looks at
(an operator is read from its parent, ``node.operator``, never found by a walk).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import libcst as cst
from libcst._maybe_sentinel import MaybeSentinel

SKIPPED_FIELDS = frozenset(
    "lpar rpar lbracket rbracket lbrace rbrace comma semicolon colon first_colon second_colon dot equal star operator"
    " asynchronous leading_lines lines_after_decorators header footer newline trailing_whitespace".split()
)
_MEMOS: list[dict[int, Any]] = []


def node_memo() -> dict[int, Any]:
    """A dict for answers kept per node by ``id(node)``; entries hold ``(node, answer)`` so an id
    cannot be reused while its entry lives. ``forget_memos`` empties every such dict."""
    memo: dict[int, Any] = {}
    _MEMOS.append(memo)
    return memo


def forget_memos() -> None:
    """Drop every per-node memo (and the trees they keep alive) once a submission is done."""
    for memo in _MEMOS:
        memo.clear()


def _can_hold_node(annotation: object) -> bool:
    """False only for fields typed as text (``str``, ``Literal[...]``, ``Union[str, MaybeSentinel]``)."""
    if annotation is str or annotation is MaybeSentinel:
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return False
    if origin is typing.Union:
        return any(_can_hold_node(argument) for argument in typing.get_args(annotation))
    return True


_PLANS: dict[type, tuple[str, ...]] = {}  # node type -> the fields that can hold a child
_IS_NODE: dict[type, bool] = {}
_CHILDREN: dict[int, tuple[cst.CSTNode, tuple[cst.CSTNode, ...]]] = node_memo()


def children(node: cst.CSTNode) -> tuple[cst.CSTNode, ...]:
    """The syntactic children of ``node`` in field order; nodes without node-typed fields answer
    ``()`` without touching the memo."""
    names = _PLANS.get(type(node))
    if names is None:
        names = _PLANS[type(node)] = tuple(
            f.name
            for f in dataclasses.fields(type(node))
            if not f.name.startswith("whitespace") and f.name not in SKIPPED_FIELDS and _can_hold_node(f.type)
        )
    if not names:
        return ()
    entry = _CHILDREN.get(id(node))
    if entry is not None and entry[0] is node:
        return entry[1]
    found: list[cst.CSTNode] = []
    is_node = _IS_NODE  # inlined lookups: this loop runs once per node of every tree
    for name in names:
        value = getattr(node, name)
        value_type = type(value)
        if value_type is list or value_type is tuple:
            for item in value:
                known = is_node.get(type(item))
                if known is None:
                    known = is_node[type(item)] = issubclass(type(item), cst.CSTNode)
                if known:
                    found.append(item)
        else:
            known = is_node.get(value_type)
            if known is None:
                known = is_node[value_type] = issubclass(value_type, cst.CSTNode)
            if known:
                found.append(value)
    result = tuple(found)
    _CHILDREN[id(node)] = (node, result)
    return result


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Pre-order walk without recursion (minified code nests deeply)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))
