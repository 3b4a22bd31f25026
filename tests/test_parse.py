"""The shared parse layer: positions identical to libcst's PositionProvider, parents complete."""

from __future__ import annotations

import abc
import ast
import sys
from pathlib import Path

import libcst as cst
import pytest
from libcst._nodes.base import CSTCodegenError
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from harness.check import positions
from harness.check.parse import MAX_EXPRESSION_DEPTH, ParsedSource, ParseFailure, _expression_depth, parse_source
from harness.check.positions import TRIVIA
from harness.submission import SourceFile

SAMPLE = '''import os\r\n
class H:
    """doc"""

    # a comment line before a field
    lr = float(os.environ.get("LR", "0.1"))


@decorator
def train(x, *, y=1):
    total = 0
    for i in range(3):  # trailing comment
        total += x[i] if i else f"{x!r:>{y}}"
    s = ("a"
         "b")
    return total; z = 2
'''


def _parsed(text: str) -> tuple[cst.Module, ParsedSource]:
    parsed = parse_source(SourceFile("t.py", Path("t.py"), text))
    return parsed.module, parsed


def test_positions_equal_libcst_position_provider() -> None:
    module, parsed = _parsed(SAMPLE)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    kept = {node: r for node, r in expected.items() if type(node) not in TRIVIA}
    assert len(kept) > 50 and len(parsed.positions) < len(expected)  # most trivia leaves are skipped
    as_tuples = {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in kept.items()}
    assert as_tuples == {node: parsed.positions[node] for node in kept}  # CodeSpan: (line, column) tuples
    assert not any(type(node) in TRIVIA for node in parsed.nodes)
    function = next(n for n in kept if isinstance(n, cst.FunctionDef))
    assert parsed.line_of(function) == 11  # the `def` line: PositionProvider starts after decorators
    # CRLF line ends count as one newline: line 2 starts right after "import os\r\n"
    assert parsed.line_of(module.body[1]) == 3


EDGE_CASES = (
    "x = ((a + (b)))[(0)]\nf((y), *(z), **{(k): (v)})",  # nested parentheses, no final newline
    "",  # empty module
    "# only a comment",
    "if x:\r\n    pass\r\nelse:\r\n    y = [\r\n        1,\r\n    ]\r\n",  # CRLF throughout
    "@d\n@e(1)\nclass C(B, metaclass=M):\n    def f(self, /, a=(1), *b, **c) -> (int):\n        return (yield)\n",
    "async def g():\n    async with a as (b, c):\n        await (x)\n    print(f'{(a)!r:>{w}}')\n",
    "from a import (b,\n    c,\n)\nfrom .d import (e)\nfrom f import (g as h)  # the range ends at a right parenthesis\n",
)


def _assert_positions_match(text: str) -> None:
    module, parsed = _parsed(text)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    kept = {node: r for node, r in expected.items() if type(node) not in TRIVIA and node is not module}
    as_tuples = {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in kept.items()}
    assert as_tuples == {node: parsed.positions[node] for node in kept}


def test_positions_match_on_edge_cases_and_real_code() -> None:
    for text in EDGE_CASES:
        _assert_positions_match(text)
    for path in sorted(Path(__file__).resolve().parents[1].glob("reference_model/*.py")):
        _assert_positions_match(path.read_text(encoding="utf-8"))


def test_the_pass_leaves_libcst_code_generation_as_it_was() -> None:
    text = "x = (a)  # c\nif y:\n    z = [1, 2]\n"
    module, _ = _parsed(text)
    assert module.code == text
    expression = cst.parse_expression("((a) + b)")
    assert cst.Module([]).code_for_node(expression) == "((a) + b)"
    assert cst.Module([]).code_for_node(cst.Name("q", lpar=[cst.LeftParen()], rpar=[cst.RightParen()])) == "(q)"


def test_parents_equal_libcst_parent_provider() -> None:
    module, parsed = _parsed(SAMPLE)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ParentNodeProvider)
    kept = {node: parent for node, parent in expected.items() if type(node) not in TRIVIA}
    assert {node: parsed.parent_of(node) for node in parsed.nodes} == kept
    seen = {id(module)}
    for node in parsed.nodes:  # pre-order: every parent is listed before its children
        assert id(parsed.parent_of(node)) in seen
        seen.add(id(node))


def test_pathological_nesting_is_refused_before_libcst() -> None:
    text = "x = " + "+".join(["a"] * 1000) + "\n"
    try:
        parse_source(SourceFile("deep.py", Path("deep.py"), text))
    except ParseFailure as failure:
        assert str(failure) == "cannot analyze deep.py: an expression nests 1000 levels (limit 400)"
    else:
        raise AssertionError("expected ParseFailure")


def _walked_depth(tree: ast.AST) -> int:
    """The plain definition: every node walked, no span bound."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        here = depth + 1 if isinstance(node, ast.expr) else 0
        deepest = max(deepest, here)
        stack.extend((child, here) for child in ast.iter_child_nodes(node))
    return deepest


def test_span_bounded_depth_is_exact_past_the_limit_and_below_it_when_it_matters() -> None:
    for terms in (10, 399, 401, 1000):
        for text in (
            "x = " + "+".join(["a"] * terms),  # one line
            "x = " + "-" * terms + "a",  # one byte per level
            "x = (\n" + "+\n".join(["a"] * terms) + ")",  # one term per line
            "x = f'{" + "+".join(["a"] * terms) + "}'",  # inside an f-string
        ):
            tree = ast.parse(text)
            walked, bounded = _walked_depth(tree), _expression_depth(tree)
            assert (walked > MAX_EXPRESSION_DEPTH) == (bounded > MAX_EXPRESSION_DEPTH)
            if walked > MAX_EXPRESSION_DEPTH:
                assert bounded == walked


def _libcst_classes() -> dict[type, tuple[type, dict[str, object]]]:
    """Every libcst node class with its metaclass and its own attributes."""
    found: dict[type, tuple[type, dict[str, object]]] = {}
    stack: list[type] = [cst.CSTNode]
    while stack:
        cls = stack.pop()
        if cls not in found:
            found[cls] = (type(cls), dict(cls.__dict__))
            stack.extend(cls.__subclasses__())
    return found


def test_parsing_changes_no_libcst_class_during_the_pass_or_after() -> None:
    """The parse is libcst's own and the positions pass only hooks its own state: another
    thread generating code meanwhile sees libcst's classes, and so does everything after."""
    before = _libcst_classes()
    assert len(before) > 150 and all(meta is abc.ABCMeta for meta, _ in before.values())
    during: list[bool] = []

    class WatchingState(positions._PositionState):
        __slots__ = ()

        def before_codegen(self, node: cst.CSTNode) -> None:
            if not during:
                during.append(_libcst_classes() == before)
            super().before_codegen(node)

    module = cst.parse_module(SAMPLE)
    state = WatchingState(module)
    module._codegen(state)
    assert during == [True]
    for text in (SAMPLE, *EDGE_CASES):
        parsed = parse_source(SourceFile("t.py", Path("t.py"), text))
        assert parsed.module.code == text or not text.endswith("\n")
    assert _libcst_classes() == before
    with pytest.raises(cst.CSTValidationError):  # libcst validates hand-built nodes as ever
        cst.Name("x", lpar=[cst.LeftParen()])


def test_a_chain_of_thousands_of_literals_is_positioned_and_the_recursion_limit_restored() -> None:
    """libcst generates code one recursion level per link: 2,900 links (about the most its
    parser takes) and 5,000 (grouped by parse_compat) go through the pass's second try, with
    libcst's own positions, and the limit is what it was afterwards."""
    limit = sys.getrecursionlimit()
    for links in (2900, 5000):
        text = "DATA = (" + " ".join(f"'p{i}'" for i in range(links)) + ")\nx = 1\n"
        parsed = parse_source(SourceFile("t.py", Path("t.py"), text))
        assert sys.getrecursionlimit() == limit
        chain = [node for node in parsed.nodes if isinstance(node, cst.ConcatenatedString)]
        assert len(chain) >= links - 5 and parsed.code_of(chain[-1]) == f"'p{links - 2}' 'p{links - 1}'"
        sys.setrecursionlimit(limit + positions.RECURSION_ROOM)
        try:
            expected = MetadataWrapper(parsed.module, unsafe_skip_copy=True).resolve(PositionProvider)
        finally:
            sys.setrecursionlimit(limit)
        kept = {node: r for node, r in expected.items() if type(node) not in TRIVIA and node is not parsed.module}
        assert {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in kept.items()} == {
            node: parsed.positions[node] for node in kept
        }
    # deeper than the raised limit allows: refused with a one-line reason, limit restored
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(positions, "RECURSION_ROOM", 0)
        with pytest.raises(ParseFailure, match="^cannot analyze deep.py: nesting too deep$"):
            parse_source(SourceFile("deep.py", Path("deep.py"), text))
    assert sys.getrecursionlimit() == limit


def test_the_public_api_serves_when_the_installed_libcst_fails_the_probe(capsys: pytest.CaptureFixture[str]) -> None:
    """A libcst whose code generation changed: the probe catches it, every pass uses
    MetadataWrapper, with the same positions, nodes and parents, and it says so once."""
    assert positions._matches_public_api()

    def shifted(module: cst.Module, text: str) -> positions.TreeLayout:
        layout = good(module, text)
        moved = {key: (start + 1, end) for key, (start, end) in layout.positions._offsets.items()}
        return layout._replace(positions=positions.Positions(moved, layout.positions._line_starts))

    good = positions._fast_layout
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(positions, "_fast_layout", shifted)
        assert not positions._matches_public_api()
        patch.setattr(positions, "_layout", None)
        texts = [SAMPLE, *EDGE_CASES[:2]]
        public = [parse_source(SourceFile("t.py", Path("t.py"), text)) for text in texts]
        assert positions._layout is positions._public_layout
    assert capsys.readouterr().err.count("using libcst's public position API") == 1
    for text, slow in zip(texts, public):
        fast = parse_source(SourceFile("t.py", Path("t.py"), text))
        assert [type(node) for node in slow.nodes] == [type(node) for node in fast.nodes]
        assert [slow.positions[node] for node in slow.nodes] == [fast.positions[node] for node in fast.nodes]
        assert [slow.code_of(node) for node in slow.nodes] == [fast.code_of(node) for node in fast.nodes]
        parent_types = [type(slow.parent_of(node)) for node in slow.nodes]
        assert parent_types == [type(fast.parent_of(node)) for node in fast.nodes]


def test_code_of_equals_libcst_code_generation_for_every_expression() -> None:
    texts = [
        SAMPLE,
        *EDGE_CASES,
        "def f():\n    x = foo(  # c\n        a,\n        # own line\n        b)[1:2]\n",
        *(
            p.read_text(encoding="utf-8")
            for p in sorted(Path(__file__).resolve().parents[1].glob("reference_model/*.py"))
        ),
    ]
    for text in texts:
        module, parsed = _parsed(text)
        expressions = [node for node in parsed.nodes if isinstance(node, cst.BaseExpression)]
        assert expressions or not text.strip() or text.startswith("#")
        for node in expressions:
            assert parsed.code_of(node) == module.code_for_node(node)


def test_flat_code_equals_flattened_code_generation_for_every_node() -> None:
    texts = [
        SAMPLE,
        *EDGE_CASES,
        "class C:\n    def f(self):\n        if x:  # c\n\n            y = (1 +\n                 2)\n",
        *(
            p.read_text(encoding="utf-8")
            for p in sorted(Path(__file__).resolve().parents[1].glob("reference_model/*.py"))
        ),
    ]
    compared = 0
    for text in texts:
        module, parsed = _parsed(text)
        for node in parsed.nodes:
            try:
                generated = module.code_for_node(node)
            except CSTCodegenError:  # nodes that only generate inside their parent
                continue
            assert parsed.flat_code(node) == " ".join(generated.split())
            compared += 1
    assert compared > 5000


def test_a_nul_byte_anywhere_is_refused_like_python_refuses_it() -> None:
    for text in ("#\x00\n", "x = 1  # \x00\n", "s = '\x00'\n"):
        try:
            parse_source(SourceFile("nul.py", Path("nul.py"), text))
        except ParseFailure as failure:
            assert str(failure) == "cannot parse nul.py: the file contains NUL bytes, which Python refuses"
        else:
            raise AssertionError(f"expected ParseFailure for {text!r}")
