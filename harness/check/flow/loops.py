"""Loops and blocks as the ordering rules see them: which names change from one iteration to
the next (a chunk/document loop advances its data, an epoch loop does not), whether the loop
runs over ``range(n)``, which ``if`` bodies end by leaving the block (guards), and the
statements a block runs itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import libcst as cst

from harness.check.flow import names as N


class Loop:
    def __init__(self, node: cst.For | cst.While, uid: int, vary: set[str], label: str, line: int) -> None:
        self.node = node
        self.uid = uid
        self.vary = vary
        self.targets = tuple(N.assigned_names(node.target)) if isinstance(node, cst.For) else ()
        self.label = label
        self.line = line
        self.over_range = isinstance(node, cst.For) and range_call(node.iter) is not None


def range_call(node: cst.BaseExpression) -> cst.Call | None:
    if isinstance(node, cst.Call) and N.dotted_name(node.func) in ("range", "trange", "tqdm.trange"):
        return node
    return None


def loop_vary(node: cst.For | cst.While) -> set[str]:
    """Names whose value changes from one iteration to the next at this loop's own level."""
    vary: set[str] = set(N.assigned_names(node.target)) if isinstance(node, cst.For) else set()
    for statement in own_statements(node.body.body, into_loops=False):
        if not isinstance(statement, cst.SimpleStatementLine):
            continue  # statement lines only: a one-line suite (``if c: i += 1``) is not read
        for small in statement.body:
            if isinstance(small, cst.AugAssign):
                vary.update(N.assigned_names(small.target))
            elif isinstance(small, cst.Assign) and isinstance(node, cst.While):
                for target in small.targets:
                    vary.update(N.assigned_names(target.target))
    return vary


def ends_in_exit(block: cst.BaseSuite) -> bool:
    last = block.body[-1] if block.body else None
    if isinstance(last, cst.SimpleStatementLine):
        last = last.body[-1] if last.body else None
    return isinstance(last, (cst.Return, cst.Continue, cst.Break, cst.Raise))


def own_statements(roots: Iterable[cst.CSTNode], *, into_loops: bool = True) -> Iterator[cst.CSTNode]:
    """The statements the code under ``roots`` runs itself, small ones included (``x = …``,
    ``break``): nested defs and classes aside, and nested loops too unless ``into_loops``."""
    stack = list(roots)
    while stack:
        current = stack.pop()
        if isinstance(current, _OWN_SCOPES) or (not into_loops and isinstance(current, (cst.For, cst.While))):
            continue
        yield current
        stack.extend(N.children(current))


_OWN_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.BaseExpression)  # expressions hold no statement
