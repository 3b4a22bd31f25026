"""Ordinary Python is never a PG000 (issue 12): forms found by ``bench/stdlib_run.py`` over the
standard library and in shims' split payloads, each reproduced by a small program written here."""

from __future__ import annotations

import sys
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from harness.check.context import CheckOptions
from harness.check.parse import ParsedSource, parse_libcst, parse_source
from harness.check.positions import TRIVIA
from harness.check.runner import analyze_one
from harness.python_ast import forget_trees
from harness.submission import SourceFile
from tests.shims import wrap_split_literal


def _parse(text: str) -> ParsedSource:
    return parse_source(SourceFile("t.py", Path("t.py"), text))


def test_parenthesized_annotated_target_parses() -> None:
    """``(x): int = 1`` is valid Python (CPython's test_grammar uses it) that libcst's grammar
    refuses: the parentheses are moved behind the target, lines and later columns kept."""
    text = "import os\n(flag): bool = True\nclass C:\n    (é.attr) : int\n    ((n)): int = 2  # c\ny = flag\n"
    parsed = _parse(text)
    annotated = [node for node in parsed.nodes if isinstance(node, cst.AnnAssign)]
    assert [(parsed.line_of(node), parsed.code_of(node.target)) for node in annotated] == [
        (2, "flag"),
        (4, "é.attr"),
        (5, "n"),
    ]
    last = next(node for node in parsed.nodes if isinstance(node, cst.Assign))
    assert parsed.positions[last].start == (6, 0)
    comment_line = parsed.module.code.splitlines()[4]
    assert comment_line.index("# c") == text.splitlines()[4].index("# c")  # later columns kept


def test_thousands_of_adjacent_literals_parse_with_libcst_positions() -> None:
    """A payload split over thousands of adjacent literals (shims, #1839; pydoc's topics)
    nests one level per literal in libcst: the positions pass walks the chain in a loop and
    records exactly what libcst's PositionProvider records."""
    pieces = 3000
    text = "DATA = (\n" + "".join(f"    'piece{i:05d}'\n" for i in range(pieces)) + ")\nx = 1\n"
    parsed = _parse(text)
    chain = [node for node in parsed.nodes if isinstance(node, cst.ConcatenatedString)]
    assert len(chain) == pieces - 1
    assert parsed.positions[chain[0]].start == (2, 4) and parsed.positions[chain[-1]].start == (pieces, 4)
    assert parsed.parent_of(chain[-1]) is chain[-2]
    assert parsed.code_of(chain[-1]) == f"'piece{pieces - 2:05d}'\n    'piece{pieces - 1:05d}'"
    shorter = "DATA = (\n" + "".join(f"    'p{i}'\n" for i in range(400)) + ")\n"
    parsed = _parse(shorter)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)  # libcst's own provider recurses once per literal
    try:
        expected = MetadataWrapper(parsed.module, unsafe_skip_copy=True).resolve(PositionProvider)
    finally:
        sys.setrecursionlimit(limit)
    kept = {node: r for node, r in expected.items() if type(node) not in TRIVIA and node is not parsed.module}
    assert len(kept) > 800
    assert {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in kept.items()} == {
        node: parsed.positions[node] for node in kept
    }


def test_a_shim_with_a_payload_split_over_thousands_of_lines_is_analyzed(tmp_path: Path) -> None:
    """#1839's shape at a larger size: the shim's module itself (not only its decoded code)
    goes through every rule family without any of them running out of recursion."""
    program = "import os\n" + "".join(f"v{i} = os.environ.get('K{i}', '{i}')\n" for i in range(3000))
    shim = tmp_path / "train_gpt.py"
    shim.write_text(wrap_split_literal(program, piece=20), encoding="utf-8")
    assert shim.read_text().count("\n") > 1200
    findings, _sources, _cacheable = analyze_one(str(shim), CheckOptions())
    assert [f for f in findings if f["rule"] == "PG000"] == []


def test_more_adjacent_literals_than_libcst_parses_are_grouped() -> None:
    """Wild #2012 inlines a data blob as 11,000 adjacent literals, one per line at column 0;
    libcst's parser refuses chains of about 3,000. The chain is cut into parenthesized
    groups joined by ``+`` (the same string, so ``.upper()`` still applies to all of it);
    every line stays where it was."""
    pieces = 3500
    text = (
        "import os\nDATA = (\n"
        + "".join(f"'q{i}'\n" for i in range(pieces))
        + ").upper()\nflag = os.environ.get('F')\n"
    )
    parsed = _parse(text)
    assigns = [node for node in parsed.nodes if isinstance(node, cst.Assign)]
    assert [parsed.line_of(node) for node in assigns] == [2, pieces + 4]
    call = assigns[0].value
    assert isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
    receiver = call.func.value  # DATA = (...).upper(): the receiver is the whole chain
    assert isinstance(receiver, cst.BinaryOperation) and isinstance(receiver.operator, cst.Add)
    flat = parsed.flat_code(receiver)  # the source's own parentheses, then the groups
    assert flat.startswith("( (('q0' 'q1'") and ")+( 'q1000'" in flat and flat.endswith("'q3499')) )")
    assert parsed.code_of(assigns[1].value) == "os.environ.get('F')"


def test_a_line_holding_only_a_backslash_before_a_statement_parses() -> None:
    """A decoded payload of wild #1887 puts lines holding only a backslash between statements:
    CPython joins them to the next line, libcst refuses one before a dedented statement. The
    backslash becomes a space; every statement keeps its line."""
    text = "\\\nfrom __future__ import annotations\nclass H:\n    a = 1\n\\\ndef f():\n    return H.a\n"
    parsed = _parse(text)  # libcst alone: "expected INDENT" at the dedented def
    defs = [node for node in parsed.nodes if isinstance(node, (cst.ClassDef, cst.FunctionDef))]
    assert [parsed.line_of(node) for node in defs] == [3, 6]


def test_a_backslash_continuing_a_statement_is_left_alone() -> None:
    """Inside a statement the same line means something (``x = 1 + \\`` … ``2``): CPython's
    reading would change, so nothing is rewritten and libcst's own answer stands."""
    text = "x = 1 + \\\n2\ny = (x +\n  3)\n"
    parsed = _parse(text)
    assigns = [node for node in parsed.nodes if isinstance(node, cst.Assign)]
    assert [parsed.line_of(node) for node in assigns] == [1, 3]


def test_keywords_glued_to_brackets_by_a_minifier_parse() -> None:
    """Wild #1858 is minified: ``a or(b if c else d)`` is Python, and libcst's node validation
    refuses it ("at least one space around boolean operator"). libcst parses it with a space
    between each such keyword and the token it touches; positions and code are the text's."""
    text = (
        "import os\n"
        "def f(pid, lut):\n"
        "\tfirst=pid<0 or(bool(lut[pid])if 0<=pid<len(lut)else True)\n"
        "\treturn first and'x'in os.environ or(1if pid else 2)\n"
        "flag = os.environ.get('F')\n"
    )
    with pytest.raises(cst.CSTValidationError):
        cst.parse_module(text)
    parsed = _parse(text)
    statements = [node for node in parsed.nodes if isinstance(node, (cst.Assign, cst.Return))]
    assert [parsed.line_of(node) for node in statements] == [3, 4, 5]
    last = statements[2]
    assert isinstance(last, cst.Assign) and parsed.code_of(last.value) == "os.environ.get('F')"
    assert parsed.flat_code(statements[0]) == "first=pid<0 or(bool(lut[pid])if 0<=pid<len(lut)else True)"


def test_a_312_payload_libcst_validation_refuses_is_parsed_spaced_with_its_own_positions() -> None:
    """A payload of #1850 is 3.12 syntax (``ast`` on 3.11 refuses it) and minified
    (``sum((a)-(b)for ...)``, refused by libcst's node validation). It is parsed with spaces
    added, and positions and code stay those of the text itself, after the spaces too."""
    text = (
        'd = {"k": 1}\nlabel = f"{d["k"]}"\n'
        "total = sum((a)-(b)for a, b in [(1, 2)]) or(1if d else 2)\n"
        "flag = os.environ.get('F'); other = [x for x in(d)if(x)]\n"
    )
    with pytest.raises(cst.CSTValidationError):
        cst.parse_module(text)
    module = parse_libcst(text, remember=True)  # as the unwrapper parses a decoded payload
    parsed = _parse(text)
    assert parsed.module is module
    assigns = [node for node in parsed.nodes if isinstance(node, cst.Assign)]
    assert [parsed.line_of(node) for node in assigns] == [1, 2, 3, 4, 4]
    last = assigns[4]
    assert parsed.positions[last].start == (4, text.splitlines()[3].index("other"))
    assert parsed.code_of(assigns[3].value) == "os.environ.get('F')"
    assert parsed.code_of(last.value) == "[x for x in(d)if(x)]"  # the text's own code, unspaced
    forget_trees()
