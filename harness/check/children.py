"""Child nodes of a libcst tree, read straight from the dataclass fields.

Why not ``node.children``: libcst runs a full visitor per call, and the rule families ask for
children of most nodes three or four times; it dominated the run time on large submissions.
Two readers exist because the data-flow engine and the mechanism detectors were written
against slightly different notions of "syntactic child" (the detectors also drop brackets,
stars and ``async`` markers); each keeps its own memo, cleared once per submission.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable

import libcst as cst
from libcst._maybe_sentinel import MaybeSentinel

ChildReader = Callable[[cst.CSTNode], tuple[cst.CSTNode, ...]]

_IS_NODE: dict[type, bool] = {}


def _can_hold_node(annotation: object) -> bool:
    """False only for fields typed as text (``str``, ``Literal[...]``, ``Union[str,
    MaybeSentinel]``): leaves such as ``Name`` or ``Integer`` then have no field to read."""
    if annotation is str or annotation is MaybeSentinel:
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return False
    if origin is typing.Union:
        return any(_can_hold_node(argument) for argument in typing.get_args(annotation))
    return True


def make_child_reader(skipped: Callable[[str], bool]) -> tuple[ChildReader, Callable[[], None]]:
    """A ``children(node)`` function over the fields ``skipped`` keeps, and its memo's reset.

    Results are kept by ``id(node)`` next to the node itself (so an id cannot be reused while
    its entry lives); nodes without node-typed fields answer ``()`` without touching the memo.
    """
    plans: dict[type, tuple[str, ...]] = {}
    memo: dict[int, tuple[cst.CSTNode, tuple[cst.CSTNode, ...]]] = {}
    is_node = _IS_NODE

    def plan_of(kind: type) -> tuple[str, ...]:
        names = tuple(f.name for f in dataclasses.fields(kind) if not skipped(f.name) and _can_hold_node(f.type))
        plans[kind] = names
        return names

    def children(node: cst.CSTNode) -> tuple[cst.CSTNode, ...]:
        kind = type(node)
        names = plans.get(kind)
        if names is None:
            names = plan_of(kind)
        if not names:
            return ()
        entry = memo.get(id(node))
        if entry is not None and entry[0] is node:
            return entry[1]
        found: list[cst.CSTNode] = []
        for name in names:
            value = getattr(node, name)
            value_type = type(value)
            if value_type is list or value_type is tuple:
                for item in value:
                    item_type = type(item)
                    known = is_node.get(item_type)
                    if known is None:
                        known = is_node[item_type] = issubclass(item_type, cst.CSTNode)
                    if known:
                        found.append(item)
            else:
                known = is_node.get(value_type)
                if known is None:
                    known = is_node[value_type] = issubclass(value_type, cst.CSTNode)
                if known:
                    found.append(value)
        result = tuple(found)
        memo[id(node)] = (node, result)
        return result

    return children, memo.clear
