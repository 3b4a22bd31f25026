"""The package's import graph has no cycle.

Why read the source and not ``sys.modules``: importing the package would only show the imports
that ran, and a cycle dodged by an import inside a function (or an ``importlib.import_module``
of a literal name) is still a cycle — it only fails later, in the order someone else's code
happens to import things. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"


def _module_names() -> dict[str, Path]:
    """Dotted name → file, for every module and package under ``harness/``."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.Module, module: str, is_package: bool, known: Collection[str]) -> set[str]:
    """The harness modules ``module`` imports anywhere in its body: ``from P import name`` is an
    import of ``P.name`` when that is a module, else of ``P``."""
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()

    def add(name: str, names: list[str] | None = None) -> None:
        for imported in names or []:
            if f"{name}.{imported}" in known:
                targets.add(f"{name}.{imported}")
            elif name in known:
                targets.add(name)
        if names is None and name in known:
            targets.add(name)

    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            add(base, [alias.name for alias in node.names])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value)
        stack.extend(ast.iter_child_nodes(node))
    targets.discard(module)
    return targets


def import_graph() -> dict[str, set[str]]:
    known = _module_names()
    return {
        name: _imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
        for name, path in known.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        iterators = [iter(sorted(graph[root]))]
        state[root] = 1
        while iterators:
            following = next(iterators[-1], None)
            if following is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(following) == 1:
                return path[path.index(following) :] + [following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                iterators.append(iter(sorted(graph.get(following, ()))))
    return None


def test_the_graph_reads_every_kind_of_import() -> None:
    graph = import_graph()
    assert "harness.check.rules_ttt" in graph["harness.check.engine"]  # ``from harness.check import rules_ttt``
    assert "harness.loader" in graph["harness.check.runner"]  # an import inside a function


FLOW = "harness.check.flow"
KNOWN = {FLOW, f"{FLOW}.names", f"{FLOW}.model", "harness.check.parse"}


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from harness.check.flow import names, nothing_here\n", "harness.x", {f"{FLOW}.names", FLOW}),
        ("import harness.check.flow.model as m\n", "harness.x", {f"{FLOW}.model"}),
        ("from . import names as N\nfrom .model import Taint\n", f"{FLOW}.taint", {f"{FLOW}.names", f"{FLOW}.model"}),
        ("from .. import parse\n", f"{FLOW}.taint", {"harness.check.parse"}),
        ("from .names import x\n", FLOW, {f"{FLOW}.names"}),  # in a package's __init__
        (
            "if TYPE_CHECKING:\n    from .model import T\nelse:\n    from . import names\n",
            f"{FLOW}.taint",
            {f"{FLOW}.names"},
        ),
        ("def f():\n    from harness.check.flow import model\n", "harness.x", {f"{FLOW}.model"}),
        ("def f():\n    return importlib.import_module('harness.check.flow.model')\n", "harness.x", {f"{FLOW}.model"}),
        ("import json\nfrom libcst import Name\n", "harness.x", set()),
    ],
)
def test_absolute_relative_lazy_and_type_only_imports(source: str, module: str, expected: set[str]) -> None:
    assert _imported(ast.parse(source), module, module == FLOW, KNOWN) == expected


def test_find_cycle_reports_the_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])
