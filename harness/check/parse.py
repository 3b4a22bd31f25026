"""Parse each source once with libcst and share the tree with every rule family.

Why libcst and not ``ast``: decoded submissions use Python 3.12 syntax (PEP 701 f-strings)
while the harness runs on 3.11; libcst's native parser accepts it. Positions and parents are
computed once, right after the parse (``positions``), because every finding needs a line.
"""

from __future__ import annotations

import ast
import re
import warnings
from functools import lru_cache

import libcst as cst

from harness.check.parse_compat import libcst_compatible, space_glued_keywords
from harness.check.positions import Positions, TreeLayout, tree_layout
from harness.python_ast import parse_python, recent_module, remember_module
from harness.submission import SourceFile


class ParsedSource:
    """One parsed source with the positions and parents every rule family reads, keyed by
    ``id(node)``: libcst nodes hash in Python (a measurable cost), and ``module`` keeps them alive."""

    __slots__ = ("source", "module", "positions", "nodes", "_parents", "_extents", "_text")

    def __init__(self, source: SourceFile, module: cst.Module, layout: TreeLayout, text: str) -> None:
        self.source = source
        self.module = module
        self.positions: Positions = layout.positions  # syntactic ranges, as libcst's PositionProvider
        self.nodes = layout.nodes  # every node but the module and trivia, in pre-order
        self._parents = layout.parents
        self._extents = layout.extents  # id -> offsets of all the text a node generates
        self._text = text  # the text the module was parsed from: the source, or its rewrite

    def parent_of(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(id(node))

    def line_of(self, node: cst.CSTNode) -> int:
        """1-based start line of ``node`` in this source (0 when unknown)."""
        position = self.positions.get(node)
        return position.start.line if position is not None else 0

    def code_of(self, node: cst.CSTNode) -> str:
        """``module.code_for_node(node)``: for a one-line expression, the node's slice of the source
        (an expression emits indentation only on continuation lines, so only those are generated)."""
        extent = self._extents.get(id(node)) if isinstance(node, cst.BaseExpression) else None
        if extent is not None:
            code = self._text[extent[0] : extent[1]]
            if "\n" not in code and "\r" not in code:
                return code
        return self.module.code_for_node(node)

    def flat_code(self, node: cst.CSTNode) -> str:
        """``code_of(node)`` with every run of whitespace made one space (messages, searches): the
        source slice serves for any node, as it lacks only indentation, which flattening drops."""
        extent = self._extents.get(id(node))
        code = self.module.code_for_node(node) if extent is None else self._text[extent[0] : extent[1]]
        return " ".join(code.split())


def string_literal_value(node: cst.SimpleString) -> str | bytes:
    """``node.evaluated_value`` without libcst's ``ast.literal_eval`` (a ``compile``) for the
    common literal: about a tenth of the rule time on a large file."""
    return _literal_value(node.value)


@lru_cache(maxsize=8192)
def _literal_value(text: str) -> str | bytes:
    """A str literal with no backslash, CR or NUL means its body, raw or not; anything else
    goes to ``literal_eval`` and raises as it would."""
    prefix_length = len(text) - len(text.lstrip("rRbBuU"))
    prefix, body = text[:prefix_length].lower(), text[prefix_length:]
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    plain = not ("b" in prefix or "\x00" in body or "\r" in body or ("\\" in body and "r" not in prefix))
    if plain and len(body) >= 2 * len(quote) and body.endswith(quote):
        return body[len(quote) : len(body) - len(quote)]
    with warnings.catch_warnings():  # invalid escapes in submission code are not our warnings
        warnings.simplefilter("ignore")
        return ast.literal_eval(text)


class ParseFailure(Exception):
    """The source is not Python that libcst can parse; carries a one-line reason."""


# Real code nests a few dozen levels; libcst's parse time grows quadratically with long operator
# chains (2,000 terms take seconds, 5,000 take a minute), so a hostile file could stall the audit.
MAX_EXPRESSION_DEPTH = 400
_NESTING_LIMIT_MESSAGES = re.compile(r"too many (nested parentheses|levels of indentation|statically nested blocks)")
# Room for nodes that share their parent's span (3.11 gives an f-string's parts the span of the
# whole f-string), so a span bound stays an upper bound.
_SPAN_SLACK = 16


def _expression_depth(tree: ast.AST) -> int:
    """Deepest chain of nested expression nodes, walked iteratively; exact above the limit. A
    one-line expression spanning ``n`` bytes nests at most ``n`` levels, so a subtree whose bound
    stays within the limit is not walked: nearly every expression of real code is skipped."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    expression = ast.expr
    while stack:
        node, depth = stack.pop()
        if isinstance(node, expression):
            here = depth + 1
            if here > deepest:
                deepest = here
            end_col = node.end_col_offset
            if (
                node.lineno == node.end_lineno
                and end_col is not None
                and here + end_col - node.col_offset + _SPAN_SLACK <= MAX_EXPRESSION_DEPTH
            ):
                continue
        else:
            here = 0
        stack.extend((child, here) for child in ast.iter_child_nodes(node))
    return deepest


def _precheck(source: SourceFile) -> ast.Module | None:
    """Refuse what libcst must not see, cheaply with ``ast``; returns CPython's tree, or None
    where ``ast`` on 3.11 refuses valid 3.12 syntax (PEP 701 f-strings), left to libcst."""
    name = source.display_name
    if "\x00" in source.text:
        # CPython refuses any NUL byte in a source file (even in a comment, which libcst would
        # accept): such a file cannot run, so its analysis would describe nothing
        raise ParseFailure(f"cannot parse {name}: the file contains NUL bytes, which Python refuses")
    try:
        tree = parse_python(source.text)  # usually the loader's tree, already parsed
    except (SyntaxError, RecursionError, MemoryError) as error:
        # CPython's own nesting limits: such a file cannot run anywhere, and libcst's native
        # parser can overflow its stack (a segfault) on it, so it must never reach libcst.
        if isinstance(error, SyntaxError) and not _NESTING_LIMIT_MESSAGES.search(str(error.msg)):
            return None
        raise ParseFailure(f"cannot analyze {name}: nesting too deep") from None
    except (ValueError, OverflowError):
        return None
    depth = _expression_depth(tree)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ParseFailure(f"cannot analyze {name}: an expression nests {depth} levels (limit {MAX_EXPRESSION_DEPTH})")
    return tree


def _parse_module(text: str) -> tuple[cst.Module, list[int]]:
    """``cst.parse_module(text)``, or the unwrapper's module of this very text, and the
    offsets in ``text`` of the spaces added for libcst's node validation: a module it refuses
    (valid minified Python, ``parse_compat.space_glued_keywords``) is parsed again spaced.
    Raises what libcst raises."""
    remembered = recent_module(text)
    if isinstance(remembered, tuple) and isinstance(remembered[0], cst.Module):
        return remembered[0], list(remembered[1])
    try:
        return cst.parse_module(text), []
    except cst.CSTValidationError:
        try:
            tree: ast.Module | None = parse_python(text)
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            tree = None
        spaced = space_glued_keywords(text, tree)
        if spaced is None:
            raise
        return cst.parse_module(spaced[0]), spaced[1]


def parse_libcst(text: str, *, remember: bool = False) -> cst.Module:
    """``_parse_module``'s module; ``remember`` keeps it for the parse layer (the unwrapper
    parses a decoded payload in 3.12 syntax, and the parse layer would parse it again)."""
    parsed = _parse_module(text)
    if remember:
        remember_module(text, parsed)
    return parsed[0]


def positions_of(module: cst.Module, text: str) -> tuple[Positions, list[cst.CSTNode]]:
    """Syntactic positions of every node of ``module`` parsed from ``text`` (the same pass as
    ``parse_source``), and the nodes in pre-order."""
    remembered = recent_module(text)
    spaces = remembered[1] if isinstance(remembered, tuple) and remembered[0] is module else []
    layout = tree_layout(module, text, spaces)
    return layout.positions, layout.nodes


def parse_source(source: SourceFile) -> ParsedSource:
    tree = _precheck(source)
    text = source.text
    try:
        try:
            module, spaces = _parse_module(text)
        except (cst.ParserSyntaxError, cst.CSTValidationError):
            # valid Python that libcst's grammar refuses, rewritten (``parse_compat``)
            rewritten = None if tree is None else libcst_compatible(text, tree)
            if rewritten is None:
                raise
            text, module, spaces = rewritten, cst.parse_module(rewritten), []
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseFailure(f"cannot parse {source.display_name}: {first_line}") from None
    try:
        return ParsedSource(source, module, tree_layout(module, text, spaces), text)
    except RecursionError:
        raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
