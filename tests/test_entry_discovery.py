"""Submission discovery and the choice of entry script on the folder shapes real pull requests
use (issue 12): scripts not named ``train_gpt.py``, scripts beside their helpers, several
candidate scripts, folders holding no code at all, and trees of such folders.

Every folder here is a minimal one written for the test; the comments cite the pull request
(or labeled case) whose shape it reproduces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.check.engine import analyze
from harness.discovery import discover_submissions
from harness.entry import choose_entries
from harness.errors import HarnessError
from harness.findings import Severity, Verdict, verdict_for
from harness.loader import NO_CODE_MESSAGE, load_submission

TRAINER = """import os

import torch


def main() -> None:
    steps = int(os.environ.get("ITERATIONS", "20"))
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        loss = model(torch.randn(2, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    print(f"step:{steps} val_loss:1.0 val_bpb:1.2")


if __name__ == "__main__":
    main()
"""
HELPER = "def encode(text: str) -> str:\n    return text.lower()\n"
JSON = json.dumps({"name": "x", "author": "a", "github_id": "a", "val_bpb": 1.2, "date": "2026-04-01"})
LOG = "step:1/20 train_loss:4.0\nstep:20/20 val_loss:1.0 val_bpb:1.2\nfinal_int8_zlib_roundtrip val_loss:1.0 val_bpb:1.2\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return folder


def _entries(folder: Path) -> list[str]:
    return [s.display_name for s in load_submission(folder).sources if s.is_entry]


def _verdict(folder: Path) -> Verdict:
    return verdict_for(analyze(load_submission(folder)))


# ---- which file is the entry ---------------------------------------------------------------


def test_the_only_script_under_another_name_is_the_entry(tmp_path: Path) -> None:
    """Labeled record 2026-03-19 smeargate (PR #1086 and its re-submissions): the script is
    train_gpt_v5.py and the README's command still says train_gpt.py."""
    folder = _write(
        tmp_path / "v5",
        {
            "train_gpt_v5.py": TRAINER,
            "README.md": "```\ntorchrun --nproc_per_node=8 train_gpt.py\n```\n",
            "submission.json": JSON,
            "train.log": LOG,
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_gpt_v5.py"]
    assert _entries(folder) == ["train_gpt_v5.py"]
    note = [f for f in submission.load_findings if f.rule == "PG000"]
    assert [(f.severity, f.file, f.message) for f in note] == [
        (Severity.INFO, "train_gpt_v5.py", "entry script: train_gpt_v5.py (the only Python file of the folder)")
    ]
    assert _verdict(folder) in (Verdict.PASS, Verdict.REVIEW)


def test_train_gpt_py_stays_the_entry_beside_other_scripts(tmp_path: Path) -> None:
    """Most records (e.g. the caseops family beside lossless_caps.py/prepare_caseops_data.py):
    the conventional name wins and the others are helper modules, with no note."""
    folder = _write(
        tmp_path / "caseops",
        {
            "train_gpt.py": "import lossless_caps\n" + TRAINER,
            "lossless_caps.py": HELPER,
            "prepare_caseops_data.py": "if __name__ == '__main__':\n    print('prep')\n",
            "README.md": "```\npython prepare_caseops_data.py\ntorchrun train_gpt.py\n```\n",
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_gpt.py"]
    assert submission.entry_note == ""
    assert _entries(folder) == ["train_gpt.py"]


def test_readme_run_command_names_the_entry(tmp_path: Path) -> None:
    """Labeled record 2026-03-31 LegendreGPT / PR #1657 (variants rrt, rrt_v4): the README's
    torchrun command names the script; markdown escapes (train\\_x.py) are read through."""
    folder = _write(
        tmp_path / "legendre",
        {
            "train_gpt_legendre.py": TRAINER,
            "train_gpt_legendre_old.py": TRAINER,
            "README.md": "Run:\n\n    RUN_ID=x torchrun --standalone --nproc_per_node=8 train\\_gpt\\_legendre.py\n",
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_gpt_legendre.py"]
    assert "named by the run command in README.md:3" in submission.entry_note


def test_the_distributed_run_command_is_the_training_entry(tmp_path: Path) -> None:
    """CaseOps README shape (PR #1756: `python3 prepare_caseops_data.py …` for the data, then
    `torchrun … train_gpt.py`), here with the trainer renamed: the torchrun-launched script is
    the entry, the data preparation and the lossless_caps helper are helper modules."""
    folder = _write(
        tmp_path / "caseops_renamed",
        {
            "train_caseops.py": "import lossless_caps\n" + TRAINER,
            "lossless_caps.py": HELPER,
            "prepare_caseops_data.py": "import lossless_caps\n\nif __name__ == '__main__':\n    print('prep')\n",
            "README.md": "```\npython3 prepare_caseops_data.py \\\n  --out data/\n"
            "SEED=1 torchrun --standalone --nproc_per_node=8 train_caseops.py\n```\n",
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_caseops.py"]
    assert "README.md:4" in submission.entry_note


def test_shell_script_names_the_entry_through_a_variable(tmp_path: Path) -> None:
    """PR #641 (106M binary: run_cuda_binary.sh runs the script) and PR #1638 (deploy.sh sets
    SCRIPT=experiments/train_gpt_v1.py, then `torchrun … ${SCRIPT}`; eval_only.py imports it)."""
    folder = _write(
        tmp_path / "deploy",
        {
            "train_gpt_v1.py": TRAINER,
            "eval_only.py": "from train_gpt_v1 import main\n\nif __name__ == '__main__':\n    main()\n",
            "deploy.sh": 'NPROC=8\nSCRIPT="experiments/train_gpt_v1.py"\ntorchrun --nproc_per_node=${NPROC} ${SCRIPT}\n',
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_gpt_v1.py"]
    assert "deploy.sh:3" in submission.entry_note
    assert _entries(folder) == ["train_gpt_v1.py"]


def test_a_log_that_echoes_the_source_names_the_entry(tmp_path: Path) -> None:
    """Labeled record 2026-04-05 XNOR-Net / PR #1439: the reference trainer logs its own code
    first, so a log tells which of several variants ran; a v2 log also shares v1's opening lines,
    but not as many."""
    shared = "\n".join(f"LAYER_{i} = {i}" for i in range(300)) + "\n"
    v1 = shared + TRAINER
    v2 = shared + "EXTRA = 1\n" + TRAINER
    folder = _write(
        tmp_path / "variants",
        {
            "train_v1.py": v1,
            "train_v2.py": v2,
            "train_v3.py": "X = 3\n" + TRAINER,
            "log_seed42.txt": v2 + "=" * 100 + "\n" + LOG,
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_v2.py"]
    assert submission.entry_note.startswith("entry script: train_v2.py (its source is echoed in log_seed42.txt)")


def test_ambiguous_candidates_are_each_audited(tmp_path: Path) -> None:
    """PR #1439 / #863 shape: variants side by side, none named anywhere. Each root that no
    other file imports is audited as an entry, the helper it imports is not, and the note says so."""
    folder = _write(
        tmp_path / "lora",
        {
            "train_lora_a.py": "import shared_utils\n" + TRAINER,
            "train_lora_b.py": "from shared_utils import encode\n" + TRAINER,
            "shared_utils.py": HELPER,
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_lora_a.py", "train_lora_b.py"]
    assert submission.entry_note.startswith("no single entry script: train_lora_a.py, train_lora_b.py are each audited")
    assert {s.display_name: s.is_entry for s in submission.sources} == {
        "train_lora_a.py": True,
        "train_lora_b.py": True,
        "shared_utils.py": False,
    }
    assert _verdict(folder) in (Verdict.PASS, Verdict.REVIEW)


def test_the_script_that_imports_the_others_is_the_entry(tmp_path: Path) -> None:
    """PR #1999 / #1672 shape (train_x.py beside modules it imports; a package of helpers)."""
    folder = _write(
        tmp_path / "modular",
        {
            "train_ternary.py": "from ternary_linear import encode\nimport losses.mse\n" + TRAINER,
            "ternary_linear.py": HELPER,
            "losses/__init__.py": "",
            "losses/mse.py": HELPER,
        },
    )
    submission = load_submission(folder)
    assert submission.entry_files == ["train_ternary.py"]
    assert "not imported by another file and has a __main__ block" in submission.entry_note


def test_a_launcher_and_the_script_it_runs_are_both_entries(tmp_path: Path) -> None:
    """PR #1555 shape: submission.py starts the trainer by file name in a subprocess."""
    folder = _write(
        tmp_path / "launcher",
        {
            "launch.py": "import subprocess\n\nsubprocess.run(['torchrun', 'inner_train.py'], check=True)\n",
            "inner_train.py": TRAINER,
        },
    )
    assert load_submission(folder).entry_files == ["inner_train.py", "launch.py"]


def test_an_unreadable_chosen_entry_is_an_error(tmp_path: Path) -> None:
    """The only script is a symlink out of the folder: its code cannot be audited."""
    outside = _write(tmp_path / "outside", {"train_v9.py": TRAINER})
    folder = _write(tmp_path / "sub", {"README.md": "x\n"})
    (folder / "train_v9.py").symlink_to(outside / "train_v9.py")
    submission = load_submission(folder)
    assert submission.entry_files == ["train_v9.py"]
    assert [(f.severity, f.file) for f in submission.load_findings if f.rule == "PG000"] == [
        (Severity.ERROR, "train_v9.py"),
        (Severity.INFO, "train_v9.py"),
    ]


def test_choose_entries_without_python_files() -> None:
    assert choose_entries(["README.md", "train.log"], lambda name: None).entries == ()


def test_a_renamed_entry_is_no_package_finding_but_must_parse(tmp_path: Path) -> None:
    """Labeled record 2026-04-15 Mamba3Hybrid (PR #1107/#1355 shape): the accepted script is
    train_mamba3_hybrid.py, so the missing train_gpt.py is no PG401; a renamed script that does
    not parse is the PG401 error train_gpt.py would get (twin of the legal folder)."""
    package = {
        "README.md": "```\ntorchrun train_mamba3_hybrid.py\n```\n",
        "submission.json": JSON,
        "train_seed1.log": LOG,
    }
    good = _write(tmp_path / "good", {"train_mamba3_hybrid.py": TRAINER, **package})
    assert not [f for f in analyze(load_submission(good)) if f.rule == "PG401"]
    broken = _write(tmp_path / "broken", {"train_mamba3_hybrid.py": "def main(:\n    pass\n", **package})
    pg401 = [f for f in analyze(load_submission(broken)) if f.rule == "PG401"]
    assert [(f.severity, f.file) for f in pg401] == [(Severity.ERROR, "train_mamba3_hybrid.py")]
    assert "does not compile" in pg401[0].message


# ---- folders without code ------------------------------------------------------------------


def test_folder_without_code_still_gets_a_report(tmp_path: Path) -> None:
    """PR #1021 / #1048 shape (wild-nocode): the pull request changed the script outside its
    records folder, which holds README, submission.json and logs only. The package checks run,
    a warning says the code could not be checked, and the verdict is review — never error."""
    folder = _write(tmp_path / "nocode", {"README.md": "# idea\n", "submission.json": JSON, "train.log": LOG})
    assert discover_submissions([folder]) == [folder]
    submission = load_submission(folder)
    assert not submission.has_code and submission.sources == []
    findings = analyze(submission)
    warning = [f for f in findings if f.rule == "PG000"]
    assert [(f.severity, f.file, f.line, f.message) for f in warning] == [(Severity.WARNING, "", 0, NO_CODE_MESSAGE)]
    assert not [f for f in findings if f.severity is Severity.ERROR]
    assert not [f for f in findings if f.rule == "PG401" and "train_gpt.py" in f.message]
    assert verdict_for(findings) is Verdict.REVIEW


def test_logs_of_a_folder_without_code_point_at_what_ran(tmp_path: Path) -> None:
    """A code-less folder whose log shows TTT epochs before "Serialized model" (the pre-quant TTT
    order of #1423/#1376): the warning says so and names the logged switches; the legal twin
    (score-first TTT after serialization, the #1431 log order) gets no TTT sentence. Both stay
    warnings (verdict review): the logs cannot show what data the TTT trained on."""
    dump = "ttt_enabled: True\nttt_lora_rank:8 ttt_chunk_size:256\n"  # a one-line dump (#512 logs) is no TTT activity
    early = (
        dump
        + "step:20/20 val_loss:1.0\nttt:start lr=0.0005 epochs=6\nttt_adamw:epoch 1/6 loss:2.9\nSerialized model: 100 bytes\n"
        + LOG
    )
    late = dump + "step:20/20 val_loss:1.0\nSerialized model: 100 bytes\nttt: chunk=0/348\n" + LOG
    for name, log, expect_ttt in (("early", early, True), ("late", late, False)):
        folder = _write(tmp_path / name, {"README.md": "x\n", "submission.json": JSON, "train_seed42.log": log})
        findings = analyze(load_submission(folder))
        [warning] = [f for f in findings if f.rule == "PG000"]
        assert warning.severity is Severity.WARNING and warning.message.startswith(NO_CODE_MESSAGE)
        assert "TTT_ENABLED=True (train_seed42.log:1)" in warning.message
        sentence = "train_seed42.log:4 shows test-time training before the model is serialized (line 6)"
        assert (sentence in warning.message) is expect_ttt, name
        assert verdict_for(findings) is Verdict.REVIEW


# ---- discovery over trees ------------------------------------------------------------------


def test_tree_discovery_finds_every_shape_once(tmp_path: Path) -> None:
    """``golf-check records/``: each submission folder once, whatever its script is called or
    whether it has code (PR #1501 keeps two submissions in one PR folder; PR #525 and #800 keep
    an older copy with its own train_gpt.py/submission.json inside the submission)."""
    records = tmp_path / "records"
    _write(
        records / "track/a_conventional",
        {"train_gpt.py": TRAINER, "older/train_gpt.py": TRAINER, "older/submission.json": JSON},
    )
    _write(records / "track/b_renamed", {"train_mamba3_hybrid.py": TRAINER, "README.md": "x\n"})
    _write(records / "track/c_nocode", {"README.md": "x\n", "submission.json": JSON})
    _write(records / "track/d_log_only", {"run_notes.txt": LOG})
    _write(
        records / "pr1501",
        {
            "README.md": "two records\n",
            "record_a/submission.json": JSON,
            "record_a/train_gpt.py": TRAINER,
            "ablation_b/submission.json": JSON,
            "ablation_b/train_b.py": TRAINER,
        },
    )
    _write(records / "notes", {"ideas.md": "not a submission\n", "todo.txt": "nothing here\n"})
    _write(records / ".cache/x", {"train_gpt.py": TRAINER})
    found = discover_submissions([records])
    assert found == [
        records / "pr1501/ablation_b",
        records / "pr1501/record_a",
        records / "track/a_conventional",
        records / "track/b_renamed",
        records / "track/c_nocode",
        records / "track/d_log_only",
    ]
    # naming a submission and its tree together counts it once
    assert discover_submissions([records / "track/b_renamed", records / "track"])[0] == records / "track/b_renamed"
    assert len(discover_submissions([records / "track/b_renamed", records / "track"])) == 4


def test_a_named_folder_with_files_but_no_marks_is_still_audited(tmp_path: Path) -> None:
    """PR #1655 (only run.sh) and #1602 (only a write-up): named on the command line, the
    folder gets a report saying what is missing; an empty one is bad input."""
    folder = _write(tmp_path / "only_run_sh", {"run.sh": "torchrun train_gpt.py\n"})
    assert discover_submissions([folder]) == [folder]
    findings = analyze(load_submission(folder))
    assert any(f.rule == "PG000" and f.severity is Severity.WARNING for f in findings)
    assert verdict_for(findings) is not Verdict.ERROR
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(HarnessError, match="no submission folder at or below it"):
        discover_submissions([tmp_path / "empty"])


def test_a_single_file_keeps_working(tmp_path: Path) -> None:
    folder = _write(tmp_path / "one", {"train_v5.py": TRAINER, "other.py": HELPER})
    submission = load_submission(folder / "train_v5.py")
    assert submission.single_file
    assert submission.entry_files == ["train_v5.py"]
    assert [(s.display_name, s.is_entry) for s in submission.sources] == [("train_v5.py", True)]
    assert discover_submissions([folder / "train_v5.py"]) == [folder / "train_v5.py"]
