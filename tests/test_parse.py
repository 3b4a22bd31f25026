"""The shared parse layer: positions identical to libcst's PositionProvider, parents complete."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from harness.check.parse import ParseFailure, parse_source
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
    as_tuples = {node: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for node, r in expected.items()}
    assert as_tuples == parsed.positions  # CodeSpan is a tuple of (line, column) tuples
    function = next(n for n in parsed.positions if isinstance(n, cst.FunctionDef))
    assert parsed.line_of(function) == 11  # the `def` line: PositionProvider starts after decorators


def test_parents_equal_libcst_parent_provider() -> None:
    module, parsed = _parsed(SAMPLE)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ParentNodeProvider)
    assert dict(expected) == parsed.parents


def test_pathological_nesting_is_refused_before_libcst() -> None:
    text = "x = " + "+".join(["a"] * 1000) + "\n"
    try:
        parse_source(SourceFile("deep.py", Path("deep.py"), text))
    except ParseFailure as failure:
        assert str(failure) == "cannot analyze deep.py: an expression nests 1000 levels (limit 400)"
    else:
        raise AssertionError("expected ParseFailure")
