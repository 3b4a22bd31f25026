"""The speed devices of the engine change nothing but time: the forked family run, the shared
``ast`` tree, the literal fast path and the paused cyclic GC."""

from __future__ import annotations

import ast
import gc
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import libcst as cst
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.check import engine
from harness.check.engine import analyze
from harness.check.forked import start_forked
from harness.check.parse import _literal_value
from harness.findings import Finding
from harness.loader import load_submission
from harness.python_ast import forget_trees, parse_python

FIXTURES = Path(__file__).parent / "fixtures"


def _three_family_submission(tmp_path: Path) -> Path:
    """PG101 (data-flow family), PG201 and PG301 (mechanism families) and PG401 (package)."""
    folder = tmp_path / "sub"
    folder.mkdir()
    shutil.copy(FIXTURES / "code/illegal/PG101_ttt_adapt.py", folder / "train_gpt.py")
    shutil.copy(FIXTURES / "mech/illegal/PG201_hash_key_target.py", folder / "ngram_helper.py")
    shutil.copy(FIXTURES / "mech/illegal/PG301_hub_download.py", folder / "hub_helper.py")
    return folder


def _facts(findings: list[Finding]) -> list[tuple]:
    return [(f.rule, f.severity.value, f.file, f.line, f.message, f.path) for f in findings]


def test_forked_families_give_the_same_findings_in_the_same_order(tmp_path: Path) -> None:
    folder = _three_family_submission(tmp_path)
    sequential = analyze(load_submission(folder), parallel=False)
    forked = analyze(load_submission(folder), parallel=True)
    assert _facts(forked) == _facts(sequential)
    located = {(f.rule, f.file, f.line) for f in sequential}
    assert {("PG101", "train_gpt.py", 54), ("PG201", "ngram_helper.py", 38), ("PG301", "hub_helper.py", 18)} <= located
    assert "PG401" in {f.rule for f in sequential}


def test_a_failed_child_is_redone_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _three_family_submission(tmp_path)
    expected = _facts(analyze(load_submission(folder)))

    class DeadChild:
        def result(self) -> None:
            return None

    monkeypatch.setattr(engine, "start_forked", lambda work: DeadChild())
    assert _facts(analyze(load_submission(folder), parallel=True)) == expected


def test_start_forked_runs_in_another_process_and_reports_failures_as_none() -> None:
    child = start_forked(os.getpid)
    assert child is not None
    assert child.result() not in (None, os.getpid())
    assert start_forked(lambda: [1, "two", (3.0,)]).result() == [1, "two", (3.0,)]  # type: ignore[union-attr]
    assert start_forked(lambda: 1 // 0).result() is None  # type: ignore[union-attr]
    assert start_forked(lambda: os._exit(3)).result() is None  # type: ignore[union-attr]  # killed mid-way


def test_analyze_restores_the_garbage_collector_state(tmp_path: Path) -> None:
    folder = _three_family_submission(tmp_path)
    assert gc.isenabled()
    analyze(load_submission(folder))
    assert gc.isenabled()
    gc.disable()
    try:
        analyze(load_submission(folder))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_parse_python_shares_one_tree_per_text_and_repeats_its_error() -> None:
    text = "x = 1\n" * 3
    tree = parse_python(text)
    assert parse_python(text) is tree
    assert parse_python("".join(["x = 1\n"] * 3)) is not tree  # equal text, other object: parsed anew
    broken = "def f(:\n"
    for _ in range(2):
        with pytest.raises(SyntaxError):
            parse_python(broken)
    forget_trees()
    assert parse_python(text) is not tree


_LITERAL_BODIES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    body=_LITERAL_BODIES,
    prefix=st.sampled_from(["", "r", "R", "u", "U", "b", "rb", "Br"]),
    quote=st.sampled_from(["'", '"', "'''", '"""']),
)
def test_literal_fast_path_equals_literal_eval(body: str, prefix: str, quote: str) -> None:
    """Over single literal tokens Python accepts (the only ones libcst hands over)."""
    assume(quote[0] not in body)
    text = f"{prefix}{quote}{body}{quote}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes: a DeprecationWarning, not an error
            expected = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        assume(False)
    assert _literal_value(text) == expected


def test_literal_fast_path_on_known_cases() -> None:
    assert _literal_value("'fineweb_val_*.bin'") == "fineweb_val_*.bin"
    assert _literal_value('"""a\n"b"\n"""') == 'a\n"b"\n'
    assert _literal_value(r"r'\d+'") == r"\d+"
    assert _literal_value(r"'a\tb'") == "a\tb"  # escapes go to literal_eval
    assert _literal_value("b'val'") == b"val"
    with pytest.raises((SyntaxError, ValueError)):  # a NUL byte: literal_eval refuses it, and so do we
        _literal_value("'a\x00b'")


def _children_by_every_field(node: cst.CSTNode, skipped: Callable[[str], bool]) -> tuple[cst.CSTNode, ...]:
    """The slow, obvious reading the fast reader must equal: every kept field, in order."""
    import dataclasses

    found = []
    for item in dataclasses.fields(node):
        if skipped(item.name):
            continue
        value = getattr(node, item.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        found.extend(v for v in values if isinstance(v, cst.CSTNode))
    return tuple(found)


PEP701_SOURCE = 'x = f"{"nested"} {y!r:>{width}}"\nasync def g(*a, b=1, **k):\n    async for i in a[1:2:3]:\n        yield (i if b else -i), lambda q: q @ q\n'


@pytest.mark.parametrize("source_path", [Path("reference_model/train.py"), Path("reference_model/model.py"), None])
def test_child_reader_equals_reading_every_field(source_path: Path | None) -> None:
    from harness.check.tree.children import SKIPPED_FIELDS, children, walk

    text = PEP701_SOURCE if source_path is None else (Path(__file__).parent.parent / source_path).read_text()
    module = cst.parse_module(text)
    nodes = list(walk(module))
    assert len(nodes) > 40
    leaves = 0
    for node in nodes:
        expected = _children_by_every_field(node, lambda n: n.startswith("whitespace") or n in SKIPPED_FIELDS)
        assert children(node) == expected
        assert children(node) is children(node) or children(node) == ()  # memoized, or a leaf
        leaves += children(node) == ()
    assert leaves > 10


def test_an_audit_leaves_no_tree_for_the_cyclic_collector(tmp_path: Path) -> None:
    """With GC paused during the audit, a reference cycle holding the trees would make the
    collection after it traverse and free the whole tree (a tenth of a single audit, per
    submission of a tree run); reference counting must free them when the audit returns."""
    submission = load_submission(_three_family_submission(tmp_path))
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        findings = analyze(submission)
        alive = [obj for obj in gc.get_objects() if isinstance(obj, cst.Module)]
        unreachable = gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    assert {finding.rule for finding in findings} >= {"PG101", "PG201", "PG301"}
    assert alive == []
    assert unreachable < 1000  # the trees alone are tens of thousands of objects
