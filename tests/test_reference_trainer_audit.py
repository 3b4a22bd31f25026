"""The reference trainer is itself a legal submission: golf-check must pass it.

It loads validation data, scores it under inference_mode periodically and at the end, and
exports an int8 artifact — the shapes the data-flow rules inspect — so a finding here would be
a false positive on the most ordinary legal program there is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.check.engine import analyze
from harness.findings import Severity
from harness.loader import load_submission

REPO = Path(__file__).resolve().parents[1]
CODE_RULE_PREFIXES = ("PG0", "PG1", "PG2", "PG3")


def test_reference_trainer_as_a_submission_folder_has_no_code_findings(tmp_path: Path) -> None:
    folder = tmp_path / "reference_submission"
    folder.mkdir()
    for module in sorted((REPO / "reference_model").glob("*.py")):
        target = "train_gpt.py" if module.name == "train.py" else module.name
        shutil.copyfile(module, folder / target)
    submission = load_submission(folder)
    assert any(source.display_name == "train_gpt.py" for source in submission.sources)
    loud = [
        (f.rule, f.file, f.line, f.message)
        for f in analyze(submission)
        if f.rule.startswith(CODE_RULE_PREFIXES) and f.severity is not Severity.INFO
    ]
    assert loud == []


def test_each_reference_module_alone_passes() -> None:
    for module in sorted((REPO / "reference_model").glob("*.py")):
        findings = analyze(load_submission(module))
        assert [f for f in findings if f.severity is not Severity.INFO] == [], module.name
