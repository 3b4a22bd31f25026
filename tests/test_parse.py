"""The shared parse layer: positions identical to libcst's PositionProvider, parents complete."""

from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst
from libcst._nodes.base import CSTCodegenError
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from harness.check.parse import _TRIVIA, MAX_EXPRESSION_DEPTH, ParseFailure, _expression_depth, parse_source
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


def _parsed(text: str) -> tuple[cst.Module, object]:
    parsed = parse_source(SourceFile("t.py", Path("t.py"), text))
    return parsed.module, parsed


def test_positions_equal_libcst_position_provider() -> None:
    module, parsed = _parsed(SAMPLE)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    kept = {node: r for node, r in expected.items() if type(node) not in _TRIVIA}
    assert len(kept) > 50 and len(parsed.positions) < len(expected)  # most trivia leaves are skipped
    as_tuples = {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in kept.items()}
    assert as_tuples == {node: parsed.positions[node] for node in kept}  # CodeSpan: (line, column) tuples
    assert not any(type(node) in _TRIVIA for node in parsed.nodes)
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
)


def _assert_positions_match(text: str) -> None:
    module, parsed = _parsed(text)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    kept = {node: r for node, r in expected.items() if type(node) not in _TRIVIA and node is not module}
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
    kept = {node: parent for node, parent in expected.items() if type(node) not in _TRIVIA}
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


def test_fast_node_construction_builds_the_same_tree_and_restores_libcst() -> None:
    from harness.check.node_init import _FAST_INITS, fast_node_construction

    texts = [
        *EDGE_CASES,
        SAMPLE,
        *(
            p.read_text(encoding="utf-8")
            for p in sorted(Path(__file__).resolve().parents[1].glob("reference_model/*.py"))
        ),
    ]
    for text in texts:
        expected = cst.parse_module(text)
        with fast_node_construction():
            fast = cst.parse_module(text)
        assert fast.deep_equals(expected) and fast.code == text
    assert len(_FAST_INITS) > 150  # nearly every concrete node class
    assert all(cls.__init__ is original for cls, original, _ in _FAST_INITS)
    assert cst.Name("x").lpar == () and cst.Arg(cst.Name("v")).whitespace_after_arg.deep_equals(
        cst.SimpleWhitespace("")
    )
    try:
        cst.Name("x", lpar=[cst.LeftParen()])  # validation is back: unbalanced parentheses
    except cst.CSTValidationError:
        pass
    else:
        raise AssertionError("libcst validation was not restored")


def test_plain_type_tests_answer_as_the_abc_machinery_did() -> None:
    import abc

    from harness.check.node_types import PlainTypeTestMeta, _node_classes

    classes = [cls for cls in _node_classes() if cls.__module__.startswith("libcst.")]
    assert type(cst.Call) is PlainTypeTestMeta and type(cst.BaseExpression) is PlainTypeTestMeta
    samples = [
        cst.Name("n"),
        cst.Integer("1"),
        cst.SimpleString("'s'"),
        cst.Comma(),
        cst.Pass(),
        cst.parse_expression("f(x)[0].a"),
        cst.parse_statement("for i in x: pass"),
        cst.Module([]),
    ]
    for cls in classes:
        for sample in samples:  # the ABC's own answer, through ABCMeta's unbound method
            assert isinstance(sample, cls) == abc.ABCMeta.__instancecheck__(cls, sample)
        for other in classes:
            assert issubclass(other, cls) == abc.ABCMeta.__subclasscheck__(cls, other)


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
