"""The one switch evaluator (harness/check/switches/): the data-flow family and the mechanism
detectors decide the same forms the same way, whichever view of the names they read."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from harness.check.parse import parse_source
from harness.check.switches import UNKNOWN
from harness.check.switches.conditions import Switches
from harness.check.switches.evaluator import Evaluator
from harness.check.switches.reach import Configuration
from harness.check.tree.index import index_module
from harness.submission import Setting, SourceFile
from harness.unknown import UNKNOWN as SHARED_UNKNOWN
from harness.unwrap_scope import UNKNOWN as UNWRAP_UNKNOWN

CODE = textwrap.dedent("""
    import os
    def _flag(name, default="0"):
        value = os.environ.get(name, default)
        return value.lower() in ("1", "true")
    def _ei(k, d):
        return int(os.environ.get(k, str(d)))
    USE = os.environ.get("USE_MIXER", "0") == "1"
    MIX = _flag("MIXER")
    STEPS = _ei("STEPS", 4) * 2
    WIDTH = getattr(cfg, "width", 0)
    class Cfg:
        width = int(os.environ.get("WIDTH", "1.5"))
""")
LOGGED = Setting("USE_MIXER", "True", "train.log", 3, "log")  # a dump prints the converted attribute
SCRIPT = Setting("MIXER", "1", "run.sh", 1, "script")


def _views(settings: dict[str, Setting]) -> list[Evaluator]:
    parsed = parse_source(SourceFile(display_name="train_gpt.py", path=Path("train_gpt.py"), text=CODE, is_entry=True))
    return [Switches([parsed], settings), Configuration([index_module(parsed)], settings)]


@pytest.mark.parametrize(
    ("expression", "settings", "expected", "documented"),
    [
        ("USE", {}, False, []),
        ("USE", {"USE_MIXER": LOGGED}, True, [LOGGED]),  # logged True stands for the "1" behind it
        ("MIX", {"MIXER": SCRIPT}, True, [SCRIPT]),  # a helper of more than one line, by its name
        ("MIX", {}, False, []),
        ("0.5 if USE else 0.0", {"USE_MIXER": LOGGED}, 0.5, [LOGGED]),  # conditional expression
        ("STEPS", {}, 8, []),  # one-line helper with the call's arguments, then arithmetic
        ("cfg.width", {}, 1, []),  # int("1.5") as the env string int(float(...))
        ("WIDTH", {}, 1, []),  # getattr(cfg, "width", 0) is the field cfg.width
        ("os.environ['OTHER'] == '1'", {}, UNKNOWN, []),
    ],
)
def test_both_families_read_one_evaluator(
    expression: str, settings: dict[str, Setting], expected: object, documented: list[Setting]
) -> None:
    for view in _views(settings):
        evaluation = view.evaluate(cst.parse_expression(expression))
        assert (evaluation.value, evaluation.documented) == (expected, documented), type(view).__name__


def test_one_unknown_for_switches_and_shims() -> None:
    assert UNKNOWN is SHARED_UNKNOWN is UNWRAP_UNKNOWN
    assert repr(UNKNOWN) == "UNKNOWN"
