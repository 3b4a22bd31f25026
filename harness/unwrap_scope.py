"""Which value a name in a shim stands for: import aliases and assignments, by Python scope.

Why scopes and not one flat table: a decompressor helper such as ``def unpack(blob): return
lzma.decompress(blob)`` takes its data as a parameter, and another function of the same file
may happen to assign ``blob = b""``. A flat table made the helper a chain over that empty
literal and reported a corrupt shim (#1953 and every submission built on its serializer).
Here a name resolves as Python resolves it: the function's own bindings (parameters, loop
targets and the like bind it to something that is not a literal), then the enclosing
functions, then the module; class bodies are skipped by the functions inside them.
Import aliases stay module-wide: shims import at the top, and a helper importing inside a
function means the same module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.unknown import UNKNOWN, Unknown

# Nodes that open a scope for the names bound in their body.
SCOPE_TYPES: frozenset[type] = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef})
_FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

# A name bound to something the evaluator cannot know (a parameter, a loop variable, an
# augmented assignment) is bound to ``UNKNOWN``: it shadows literals bound to the same name in
# outer scopes.
Bound = ast.expr | Unknown

_MODULE = 0  # scope key of the module itself


@dataclass
class Scope:
    """Names of one module by scope. ``add`` is called for every node of one walk (with the
    scope node that owns it, None for the module); ``binding`` answers for a ``Name`` use."""

    aliases: dict[str, str] = field(default_factory=dict)
    star_modules: list[str] = field(default_factory=list)
    # (scope key, name) -> (line, value) in walk order; the scope key is id() of the scope node
    bindings: dict[tuple[int, str], list[tuple[int, Bound]]] = field(default_factory=dict)
    # id(Name) -> the scope node it is used in, for names inside functions or classes only
    name_owners: dict[int, ast.AST] = field(default_factory=dict)
    _enclosing: dict[int, ast.AST | None] = field(default_factory=dict)
    _declared: dict[tuple[int, str], int] = field(default_factory=dict)  # global/nonlocal names

    def add(self, node: ast.AST, owner: ast.AST | None = None) -> None:
        """Record what ``node`` binds, if anything."""
        kind = type(node)
        if isinstance(node, ast.Name):
            if owner is not None:
                self.name_owners[id(node)] = owner
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                self.aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            if node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.star_modules.append(node.module)
                    else:
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value, node.lineno, owner)
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)):
            if node.value is not None:
                self._bind_target(node.target, node.value, node.lineno, owner)
        elif isinstance(node, ast.withitem):
            if node.optional_vars is not None:
                line = getattr(node.context_expr, "lineno", 0)
                self._bind_target(node.optional_vars, node.context_expr, line, owner)
        elif kind in SCOPE_TYPES:
            self._open_scope(node, owner)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.AugAssign)):
            self._bind_target(node.target, UNKNOWN, node.lineno, owner)
        elif isinstance(node, ast.comprehension):
            self._bind_target(node.target, UNKNOWN, getattr(node.target, "lineno", 0), owner)
        elif isinstance(node, ast.ExceptHandler):
            if node.name:
                self._bind(node.name, UNKNOWN, node.lineno, owner)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            here = _key(owner)
            declaring = _MODULE if isinstance(node, ast.Global) else _key(self._enclosing_function(owner))
            for name in node.names:
                self._declared[(here, name)] = declaring

    def binding(self, node: ast.Name) -> Bound | None:
        """The value ``node`` stands for where it is used: ``UNKNOWN`` when the scope that
        binds it binds something else than a value expression, None when nothing binds it
        (a builtin or a module)."""
        name = node.id
        owner = self.name_owners.get(id(node))
        innermost = True
        while True:
            if owner is not None and not innermost and type(owner) is ast.ClassDef:
                owner = self._enclosing.get(id(owner))  # a class body is not visible to its methods
                continue
            key = _key(owner)
            declared = self._declared.get((key, name))
            if declared is not None:
                return _latest(self.bindings.get((declared, name)), node.lineno)
            candidates = self.bindings.get((key, name))
            if candidates:
                return _latest(candidates, node.lineno)
            if owner is None:
                return None
            owner = self._enclosing.get(id(owner))
            innermost = False

    def _open_scope(self, node: ast.AST, owner: ast.AST | None) -> None:
        self._enclosing[id(node)] = owner
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._bind(node.name, UNKNOWN, node.lineno, owner)
        if isinstance(node, _FUNCTION_TYPES):
            for parameter in _parameters(node.args):
                self._bind(parameter, UNKNOWN, node.lineno, node)

    def _enclosing_function(self, owner: ast.AST | None) -> ast.AST | None:
        scope = self._enclosing.get(id(owner)) if owner is not None else None
        while scope is not None and type(scope) is ast.ClassDef:
            scope = self._enclosing.get(id(scope))
        return scope

    def _bind_target(self, target: ast.AST, value: Bound, line: int, owner: ast.AST | None) -> None:
        if isinstance(target, ast.Name):
            self._bind(target.id, value, line, owner)
            return
        for name in _target_names(target):  # unpacking: no single literal per name
            self._bind(name, UNKNOWN, line, owner)

    def _bind(self, name: str, value: Bound, line: int, owner: ast.AST | None) -> None:
        key = _key(owner)
        key = self._declared.get((key, name), key)
        self.bindings.setdefault((key, name), []).append((line, value))


def _key(owner: ast.AST | None) -> int:
    return _MODULE if owner is None else id(owner)


def _latest(candidates: list[tuple[int, Bound]] | None, line: int) -> Bound | None:
    """The last binding above the use, else the last of all (a function reading a module
    constant assigned below it)."""
    if not candidates:
        return None
    before = [value for assigned, value in candidates if assigned <= line]
    return before[-1] if before else candidates[-1][1]


def _parameters(arguments: ast.arguments) -> Iterator[str]:
    for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
        yield argument.arg
    if arguments.vararg is not None:
        yield arguments.vararg.arg
    if arguments.kwarg is not None:
        yield arguments.kwarg.arg


def _target_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


# The node types ``Scope.add`` records something for; every other node it ignores.
BINDING_NODES: frozenset[type] = frozenset(
    {
        ast.Name,
        ast.Import,
        ast.ImportFrom,
        ast.Assign,
        ast.AnnAssign,
        ast.NamedExpr,
        ast.withitem,
        ast.For,
        ast.AsyncFor,
        ast.AugAssign,
        ast.comprehension,
        ast.ExceptHandler,
        ast.Global,
        ast.Nonlocal,
        *SCOPE_TYPES,
    }
)


def walk_with_owners(tree: ast.AST) -> tuple[list[ast.AST], list[ast.AST | None]]:
    """Every node in ``ast.walk``'s order (breadth-first), each with the scope node it belongs
    to (None for the module), without ``ast.walk``'s generator-per-node cost. Only a scope
    node's ``body`` belongs to it: decorators, defaults and base classes are evaluated in the
    enclosing scope."""
    nodes: list[ast.AST] = [tree]
    owners: list[ast.AST | None] = [None]
    scope_types = SCOPE_TYPES
    node_type = ast.AST
    position = 0
    while position < len(nodes):
        node = nodes[position]
        owner = owners[position]
        position += 1
        inner = node if type(node) in scope_types else owner
        for name in node._fields:
            value = getattr(node, name, None)
            child_owner = inner if name == "body" else owner
            if type(value) is list:
                items = [item for item in value if isinstance(item, node_type)]
                nodes.extend(items)
                owners.extend([child_owner] * len(items))
            elif isinstance(value, node_type):
                nodes.append(value)
                owners.append(child_owner)
    return nodes, owners
