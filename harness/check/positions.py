"""Positions and parents of every node of a libcst tree, in one code-generation pass.

Why not libcst's ``MetadataWrapper``: its position and parent providers cost over three times
the parse itself on a 3,800-line submission, and every finding needs a line. This is the one
module using libcst internals: a ``CodegenState`` subclass whose hooks (which libcst calls on
the state) record what ``PositionProvider`` records, plus the parents; no libcst class is
changed, so code generation anywhere else stays libcst's own. Before the first pass, a
built-in probe program goes through this pass and through libcst's public providers; if they
disagree (a libcst whose code generation changed), every pass uses the public providers
instead and says so once on stderr.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from harness.check.cache import libcst_version

_Result = TypeVar("_Result")


class CodePoint(NamedTuple):  # libcst's CodePosition (1-based line, 0-based column), as a cheaper tuple
    line: int
    column: int


class CodeSpan(NamedTuple):  # libcst's CodeRange: ``.start.line``, ``.end.column``
    start: CodePoint
    end: CodePoint


class Positions:
    """Node → CodeSpan, converted from character offsets only when a rule asks: most of the
    ~60k nodes of a 3,800-line file are never looked up, and the pass then only adds ints."""

    __slots__ = ("_offsets", "_line_starts", "_spans")

    def __init__(self, offsets: dict[int, tuple[int, int]], line_starts: list[int]) -> None:
        self._offsets = offsets
        self._line_starts = line_starts
        self._spans: dict[int, CodeSpan] = {}

    def offsets(self, node: cst.CSTNode) -> tuple[int, int] | None:
        """Start and end character offsets: ordered like (line, column), cheaper to compare."""
        return self._offsets.get(id(node))

    def get(self, node: cst.CSTNode) -> CodeSpan | None:
        key = id(node)
        span = self._spans.get(key)
        if span is None and key in self._offsets:
            start, end = self._offsets[key]
            span = self._spans[key] = CodeSpan(self._point(start), self._point(end))
        return span

    def __getitem__(self, node: cst.CSTNode) -> CodeSpan:
        span = self.get(node)
        if span is None:
            raise KeyError(node)
        return span

    def __len__(self) -> int:
        return len(self._offsets)

    def _point(self, offset: int) -> CodePoint:
        line = bisect_right(self._line_starts, offset)
        return CodePoint(line, offset - self._line_starts[line - 1])


class TreeLayout(NamedTuple):
    positions: Positions
    nodes: list[cst.CSTNode]  # in pre-order, no module, no trivia
    parents: dict[int, cst.CSTNode]
    extents: dict[int, tuple[int, int]]  # all the text a node generates; empty if not the source's


# Leaf trivia no rule looks at (no children helper returns them): about half of all nodes, 50k
# of 115k in a 3,800-line file are SimpleWhitespace. Whitespace and comments, then punctuation.
TRIVIA: frozenset[type] = frozenset(
    {cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.Newline, cst.TrailingWhitespace, cst.EmptyLine, cst.Comment}
    | {cst.Comma, cst.LeftParen, cst.RightParen, cst.AssignEqual, cst.Semicolon}
)


class _PositionState(CodegenState):
    """libcst's code generator, reduced to offsets (the text is the source: libcst round-trips it).
    ``tokens`` stays one empty string long so that ``Module`` never believes the file empty nor
    pops a newline that was not added. The state is its own context manager for
    ``record_syntactic_position`` (libcst's generator-based one was the pass's largest cost)."""

    __slots__ = ("offset", "offsets", "extents", "parents", "nodes", "open_nodes", "syntactic")

    def __init__(self, module: cst.Module) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.offset = 0
        self.tokens = [""]
        self.offsets: dict[int, tuple[int, int]] = {}
        self.extents: dict[int, tuple[int, int]] = {}
        self.parents: dict[int, cst.CSTNode] = {}
        self.nodes: list[cst.CSTNode] = []
        self.open_nodes: list[tuple[cst.CSTNode, int]] = []  # node, start offset
        # open syntactic ranges: node, start node, end node, start offset
        self.syntactic: list[tuple[cst.CSTNode, cst.CSTNode | None, cst.CSTNode | None, int]] = []

    def add_indent_tokens(self) -> None:
        self.offset += sum(map(len, self.indent_tokens))

    def add_token(self, value: str) -> None:
        self.offset += len(value)

    def pop_trailing_newline(self) -> None:
        return None  # offsets past the last token are never read

    def before_codegen(self, node: cst.CSTNode) -> None:
        if type(node) in TRIVIA:
            return
        open_nodes = self.open_nodes
        if open_nodes:
            self.parents[id(node)] = open_nodes[-1][0]
            self.nodes.append(node)
        open_nodes.append((node, self.offset))

    def after_codegen(self, node: cst.CSTNode) -> None:
        if type(node) in TRIVIA:
            return
        key = id(node)
        extent = self.extents[key] = (self.open_nodes.pop()[1], self.offset)
        if key not in self.offsets:  # a syntactic range recorded inside wins, as in libcst
            self.offsets[key] = extent

    def record_syntactic_position(  # type: ignore[override]
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _PositionState:
        self.syntactic.append((node, start_node, end_node, self.offset))
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        node, start_node, end_node, start = self.syntactic.pop()
        offsets = self.offsets
        # A trivia start or end node (the ``)`` of ``from x import (a, b)``) records no offsets;
        # trivia never start a range, and a trivia end is its last token: the current offset.
        if start_node is not None and id(start_node) in offsets:
            start = offsets[id(start_node)][0]
        end_offsets = offsets.get(id(end_node)) if end_node is not None else None
        offsets[id(node)] = (start, end_offsets[1] if end_offsets is not None else self.offset)


_NEWLINE = re.compile(r"\r\n?|\n")


def _line_starts(code: str) -> list[int]:
    """Offsets where each line begins, splitting on the newlines libcst's positions count."""
    return [0, *(match.end() for match in _NEWLINE.finditer(code))]


# Frames added for a deep tree: no tree that reaches the pass needs more than a small part (libcst
# refuses over ~3,000 adjacent literals, which ``parse_compat`` groups; ``ast`` deeper elif chains).
RECURSION_ROOM = 50_000


def with_room_to_recurse(work: Callable[[], _Result]) -> _Result:
    """``work()``; on a RecursionError, once more with the recursion limit raised by
    ``RECURSION_ROOM``. libcst recurses once per link of an implicit string concatenation or
    per ``elif``; on 3.11, Python-to-Python calls do not grow the C stack, so the room costs
    heap memory only, and only for such a tree."""
    try:
        return work()
    except RecursionError:
        pass
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + RECURSION_ROOM)
    try:
        return work()
    finally:
        sys.setrecursionlimit(limit)


def _fast_layout(module: cst.Module, text: str) -> TreeLayout:
    def run() -> _PositionState:
        state = _PositionState(module)
        module._codegen(state)
        return state

    state = with_room_to_recurse(run)
    # The generated text is the source (libcst round-trips it; a source without a final newline
    # gets one, popped at the end). Should that ever not hold, the lines come from the code.
    extents = state.extents
    if state.offset not in (len(text), len(text) + len(module.default_newline)):
        text = module.code
        extents = {}  # slices of the source would not be the generated code
    return TreeLayout(Positions(state.offsets, _line_starts(text)), state.nodes, state.parents, extents)


def _public_layout(module: cst.Module, text: str) -> TreeLayout:
    """The same layout from libcst's public providers, several times slower."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    spans = with_room_to_recurse(lambda: wrapper.resolve(PositionProvider))
    parent_of = with_room_to_recurse(lambda: wrapper.resolve(ParentNodeProvider))
    starts = _line_starts(module.code)
    offsets = {
        id(node): (starts[span.start.line - 1] + span.start.column, starts[span.end.line - 1] + span.end.column)
        for node, span in spans.items()
        if type(node) not in TRIVIA and node is not module  # it may end past a final newline libcst adds
    }
    nodes: list[cst.CSTNode] = []
    stack = list(reversed(module.children))
    while stack:  # pre-order, as the pass lists them
        node = stack.pop()
        if type(node) not in TRIVIA:
            nodes.append(node)
        stack.extend(reversed(node.children))
    parents = {id(node): parent_of[node] for node in nodes}
    return TreeLayout(Positions(offsets, starts), nodes, parents, {})


# Each way libcst records a position: parentheses, decorators, a parenthesized import, compound
# statements' start and end nodes, comments, CRLF, an f-string, a concatenation, match patterns.
_PROBE = (
    "import os\r\nfrom a import (b,\n    c)\n@d(1)\nclass C(B, metaclass=M):\n"
    '    """doc"""\n    # c\n    x: int = ((1 + (2)))  # t\n    def f(self, /, a=(1), *b, **k) -> (int):\n'
    '        for i in range(3):\n            yield f"{a!r:>{i}}" \'x\' "y"\n        else:\n'
    "            pass; z = [1, (2), {3: (4)}][0]\n"
    "try:\n    pass\nexcept (E, F) as e:\n    raise\nfinally:\n    del x\n"
    "with (open(p) as h, q):\n    lambda v: (yield)\n"
    "match (n):\n    case [1, *rest] if (rest):\n        print(*rest, sep='')\n    case {'k': v} | C(a=1):\n        pass\n"
)


def _matches_public_api() -> bool:
    module = cst.parse_module(_PROBE)
    try:
        fast = _fast_layout(module, _PROBE)
    except Exception:  # noqa: BLE001 — any failure of the internals means: do not use them
        return False
    public = _public_layout(module, _PROBE)
    spans = {id(node): fast.positions.get(node) for node in public.nodes}
    return (
        [id(node) for node in fast.nodes] == [id(node) for node in public.nodes]
        and spans == {id(node): public.positions.get(node) for node in public.nodes}
        and fast.parents == public.parents
    )


_layout: Callable[[cst.Module, str], TreeLayout] | None = None


def tree_layout(module: cst.Module, text: str, spaces: Sequence[int] = ()) -> TreeLayout:
    """Positions, pre-order nodes, parents and extents of ``module`` parsed from ``text``, or
    from ``text`` with a space added at each offset of ``spaces`` (positions still in ``text``).
    Raises RecursionError for a tree too deep even with the raised limit."""
    global _layout
    if _layout is None:
        if _matches_public_api():
            _layout = _fast_layout
        else:
            _layout = _public_layout
            print(
                f"golf-check: libcst {libcst_version()} generates code differently from the versions its "
                "fast positions pass was checked against; using libcst's public position API (slower)",
                file=sys.stderr,
            )
    if not spaces:
        return _layout(module, text)
    pieces = [text[start:end] for start, end in zip((0, *spaces), (*spaces, len(text)))]
    layout = _layout(module, " ".join(pieces))
    marks = [offset + index for index, offset in enumerate(spaces)]  # the spaces in the parsed text

    def back(offsets: tuple[int, int]) -> tuple[int, int]:
        return offsets[0] - bisect_left(marks, offsets[0]), offsets[1] - bisect_left(marks, offsets[1])

    positions = {key: back(offsets) for key, offsets in layout.positions._offsets.items()}
    extents = {key: back(offsets) for key, offsets in layout.extents.items()}
    return TreeLayout(Positions(positions, _line_starts(text)), layout.nodes, layout.parents, extents)
