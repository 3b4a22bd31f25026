"""The README's quick start and CI run the same thing: ``.ci/run`` calls the README's second
command verbatim, so a green CI means the command a newcomer copies works, lint and types included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the quick start has a bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_with_pinned_torch_and_extras() -> None:
    main_job, tests = _quick_start_commands()
    assert main_job.endswith("&& .venv/bin/golf-eval") and "torch==2.13.0 -e '.[eval" in main_job
    assert "torch==2.13.0 -e '.[eval,report,dev]'" in tests


def test_ci_runs_the_readme_test_command_with_lint_and_types_before_the_tests() -> None:
    _, tests = _quick_start_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci_lines
    steps = [step.strip() for step in tests.split("&&")]
    order = [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy",
        ".venv/bin/python -m pytest",
    ]
    assert [step for step in steps if step in order] == order
