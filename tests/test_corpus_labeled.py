"""The figures of issue 12 on the challenge's labeled submissions, held in CI.

Real submissions are the measure of golf-check: the synthetic fixtures only imitate them.
``../shared/corpus`` (beside the clone, as in CI) holds 24 submissions ruled illegal and 31
records the organizers accepted. Every case is audited as a user would run golf-check
(``bench/corpus_runner.py`` does the running and the judging, so the bench and this test can
never disagree on what "caught" means). A user's fresh clone has no corpus: the test skips.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT.parent / "shared" / "corpus"


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_runner", REPO_ROOT / "bench" / "corpus_runner.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def labeled_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, list, dict]:
    if not (CORPUS / "unpack").is_file() or not (CORPUS / "labeled.tsv").is_file():
        pytest.skip(f"no challenge corpus at {CORPUS} (only CI and the developers' machines have ../shared)")
    runner = _load_runner()
    root = runner.unpack(CORPUS, "labeled", tmp_path_factory.mktemp("corpus"))
    cases = runner.read_labels(CORPUS)
    folders = [root / "labeled" / case.case_id for case in cases]
    results = {result.folder: result for result in runner.audit_all(folders, jobs=2)}
    return runner, cases, results


def _describe(runner: ModuleType, cases: list, results: dict, outcomes: set[str]) -> str:
    lines = []
    for case in cases:
        result = results[case.case_id]
        outcome = runner.judge(case, result)
        if outcome in outcomes:
            lines.append(
                f"{case.case_id}: {outcome}, verdict {result.verdict}, errors "
                f"{sorted(result.error_rules)} {result.problem}".rstrip()
            )
    return "\n".join(lines)


def test_no_labeled_case_is_an_error_or_unreported(labeled_results: tuple[ModuleType, list, dict]) -> None:
    runner, cases, results = labeled_results
    figures = runner.labeled_figures(cases, results)
    assert figures.cases == 55
    assert figures.errors == 0, _describe(runner, cases, results, {"ERROR"})


def test_no_accepted_record_fails(labeled_results: tuple[ModuleType, list, dict]) -> None:
    runner, cases, results = labeled_results
    figures = runner.labeled_figures(cases, results)
    assert figures.legal == 31
    assert figures.legal_failing == 0, _describe(runner, cases, results, {"FALSE-FAIL"})


def test_illegal_cases_are_caught_with_a_ruled_rule(labeled_results: tuple[ModuleType, list, dict]) -> None:
    runner, cases, results = labeled_results
    figures = runner.labeled_figures(cases, results)
    assert figures.illegal == 24
    assert figures.caught >= runner.GOAL_CAUGHT, _describe(runner, cases, results, {"missed", "wrong-reason"})
