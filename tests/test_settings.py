"""Effective settings: exact values, origins and precedence across code, README, scripts, logs."""

from __future__ import annotations

from pathlib import Path

from harness.settings import (
    code_settings,
    collect_settings,
    documented_alternatives,
    log_settings,
    readme_settings,
    script_settings,
)
from harness.submission import Setting, SourceFile

README = """# 11L record

Reproduce:

```bash
NUM_LAYERS=11 \\
TTT_ENABLED=1 SEED=42 torchrun --nproc_per_node=8 train_gpt.py
```

Ablation without TTT: `TTT_ENABLED=0 python train_gpt.py`.
Set `TTT_EPOCHS=5` to try more epochs (not a run command).

```python
os.environ["NOT_SHELL"] = "1"
```

```
export TTT_LR=0.002 RUN_NAME="a b"
env -u CUDA_VISIBLE_DEVICES PREQUANT=1 python3 train_gpt.py
```
Plain text: DATA_PATH=./data torchrun train_gpt.py
"""

SCRIPT = """#!/bin/bash
set -euo pipefail
BASE=/data/fineweb
for SEED in 1337 42; do
  SEED=$SEED DATA_PATH=${BASE}/val RUN_ID=r_$SEED TTT_EPOCHS=${EPOCHS:-3} torchrun train_gpt.py  # X=9
done
UNKNOWN_REF=$NOT_SET python train_gpt.py
"""

LOG = """1712345678.5 logs/3f2a.txt
import os
import torch
def main():
    ttt_enabled: bool = False
====================================================================================================
1712345679 Hyperparameters:
1712345679   ttt_enabled: True
1712345679   ttt_epochs: 4
1712345679 model_dim:512 num_heads:8 num_layers:11
1712345680 step:0/20000 val_loss:6.9412 val_bpb:4.1110
1712345681 late_key: 7
"""


def test_readme_run_commands() -> None:
    found = [(s.name, s.value, s.line) for s in readme_settings(README, "README.md")]
    assert found == [
        ("NUM_LAYERS", "11", 6),
        ("TTT_ENABLED", "1", 7),
        ("SEED", "42", 7),
        ("TTT_ENABLED", "0", 10),
        ("TTT_LR", "0.002", 18),
        ("RUN_NAME", "a b", 18),
        ("PREQUANT", "1", 19),
        ("DATA_PATH", "./data", 21),
    ]
    assert {s.source_kind for s in readme_settings(README, "README.md")} == {"readme"}


def test_script_loops_variables_and_defaults() -> None:
    found = [(s.name, s.value, s.line) for s in script_settings(SCRIPT, "run.sh")]
    assert found == [
        ("SEED", "1337", 4),
        ("SEED", "42", 4),
        ("SEED", "1337", 5),
        ("SEED", "42", 5),
        ("DATA_PATH", "/data/fineweb/val", 5),
        ("RUN_ID", "r_1337", 5),
        ("RUN_ID", "r_42", 5),
        ("TTT_EPOCHS", "3", 5),
    ]


def test_log_dump_skips_code_and_stops_at_steps() -> None:
    found = [(s.name, s.value, s.line) for s in log_settings(LOG, "logs/seed42.txt")]
    assert found == [
        ("TTT_ENABLED", "True", 8),
        ("TTT_EPOCHS", "4", 9),
        ("MODEL_DIM", "512", 10),
        ("NUM_HEADS", "8", 10),
        ("NUM_LAYERS", "11", 10),
    ]


def test_code_writes_found_by_the_parser_only() -> None:
    code = (
        "import os\n"
        "from os import environ\n"
        'os.environ.setdefault("TTT_ENABLED", "1")\n'
        'environ["QUANT_BITS"] = 6\n'
        'text = \'os.environ.setdefault("FAKE", "1")\'\n'
        '# os.environ["COMMENTED"] = "1"\n'
        'os.environ.setdefault("DYNAMIC", str(3))\n'
    )
    assert code_settings(code, "train_gpt.py") == [
        Setting("TTT_ENABLED", "1", "train_gpt.py", 3, "setdefault"),
        Setting("QUANT_BITS", "6", "train_gpt.py", 4, "code"),
    ]


def _folder(tmp_path: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return sorted(files)


def test_precedence_code_readme_script_log(tmp_path: Path) -> None:
    files = _folder(
        tmp_path,
        {
            "README.md": "```\nTTT_ENABLED=1 TTT_EPOCHS=2 QUANT=int8 ONLY_README=yes torchrun train_gpt.py\n```\n",
            "run.sh": "TTT_EPOCHS=3 QUANT=int6 torchrun train_gpt.py\n",
            "logs/train_seed1.log": "ttt_epochs: 4\n",
            "train_gpt.py": "",
        },
    )
    code = 'import os\nos.environ.setdefault("TTT_ENABLED", "0")\nos.environ.setdefault("ONLY_CODE", "1")\nos.environ["QUANT"] = "int4"\n'
    sources = [SourceFile("train_gpt.py[decoded#1]", tmp_path / "train_gpt.py", code, "decoded", 1, True)]
    settings = collect_settings(tmp_path, files, sources)
    assert settings == {
        "TTT_ENABLED": Setting("TTT_ENABLED", "1", "README.md", 2, "readme"),
        "ONLY_CODE": Setting("ONLY_CODE", "1", "train_gpt.py[decoded#1]", 3, "setdefault"),
        "QUANT": Setting("QUANT", "int4", "train_gpt.py[decoded#1]", 4, "code"),
        "TTT_EPOCHS": Setting("TTT_EPOCHS", "4", "logs/train_seed1.log", 1, "log"),
        "ONLY_README": Setting("ONLY_README", "yes", "README.md", 2, "readme"),
    }


def test_within_one_kind_the_last_documented_value_wins(tmp_path: Path) -> None:
    files = _folder(
        tmp_path,
        {
            "README.md": "`TTT_ENABLED=0 python train_gpt.py`\n\n`TTT_ENABLED=1 torchrun train_gpt.py`\n",
            "run.sh": "for SEED in 1 2; do SEED=$SEED TTT_ENABLED=1 torchrun train_gpt.py; done\n",
            "requirements.txt": "torch: 2.4\n",
        },
    )
    assert collect_settings(tmp_path, files, [])["TTT_ENABLED"] == Setting("TTT_ENABLED", "1", "run.sh", 1, "script")
    assert collect_settings(tmp_path, files, [])["SEED"] == Setting("SEED", "2", "run.sh", 1, "script")


def test_symlinked_documents_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("`TTT_ENABLED=1 torchrun train_gpt.py`\n", encoding="utf-8")
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "README.md").symlink_to(outside)
    assert collect_settings(folder, ["README.md"], []) == {}


def test_labelled_one_line_dump() -> None:
    text = "1714000000.5 Hyperparameters: ttt_enabled:True ttt_epochs:3 seed:42\nstep:1/10 train_loss:6.9\n"
    found = [(s.name, s.value, s.line) for s in log_settings(text, "train.log")]
    assert found == [("TTT_ENABLED", "True", 1), ("TTT_EPOCHS", "3", 1), ("SEED", "42", 1)]


def test_a_log_dump_of_minified_field_names_sets_the_env_keys_the_fields_read(tmp_path: Path) -> None:
    code = (
        'import os\nclass H:\n\tpq_on=bool(int(os.environ.get("PREQUANT_TTT_ENABLED","0")));'
        'seed=int(os.environ.get("SEED",1337))\n'
    )
    (tmp_path / "train_seed7.log").write_text("pq_on: True\nseed: 7\nstep:0/10 train_loss:5.0\n")
    sources = [SourceFile("train_gpt.py", tmp_path / "train_gpt.py", code, is_entry=True)]
    settings = collect_settings(tmp_path, ["train_gpt.py", "train_seed7.log"], sources)
    assert settings["PREQUANT_TTT_ENABLED"] == Setting("PREQUANT_TTT_ENABLED", "True", "train_seed7.log", 1, "log")
    assert settings["SEED"] == Setting("SEED", "7", "train_seed7.log", 2, "log")  # already the env name


def test_each_documented_run_command_is_an_alternative_configuration(tmp_path: Path) -> None:
    readme = (
        "Reproduce the record:\n```bash\nPREQUANT_TTT_ENABLED=1 SEED=42 torchrun train_gpt.py\n```\n"
        "Ablation:\n```bash\nPREQUANT_TTT_ENABLED=0 SEED=42 torchrun train_gpt.py\n```\n"
    )
    files = _folder(tmp_path, {"README.md": readme, "train_gpt.py": ""})
    effective = collect_settings(tmp_path, files, [])
    assert effective["PREQUANT_TTT_ENABLED"].value == "0"  # the later command, as before
    (alternative,) = documented_alternatives(tmp_path, files, [])
    assert alternative["PREQUANT_TTT_ENABLED"] == Setting("PREQUANT_TTT_ENABLED", "1", "README.md", 3, "readme")
    logged = _folder(tmp_path / "logged", {"README.md": readme, "train_seed42.log": "prequant_ttt_enabled: 0\n"})
    assert documented_alternatives(tmp_path / "logged", logged, []) == []  # what the logs record ran


def test_a_nested_label_in_a_one_line_dump_prefixes_its_sub_field() -> None:
    """#487: ``sgd_ttt:param_set:control`` in the dump line labels a sub-field of the default-off
    SGD_TTT path; read as SGD_TTT="param_set:control" (truthy) it switched on a TTT that never ran."""
    text = "sgd_ttt:param_set:control compile:enabled=1 seed:7\nstep:1/10 train_loss:6.9\n"
    found = [(s.name, s.value, s.line) for s in log_settings(text, "train.log")]
    assert found == [("SGD_TTT_PARAM_SET", "control", 1), ("COMPILE_ENABLED", "1", 1), ("SEED", "7", 1)]


def test_a_nested_label_in_the_log_leaves_a_default_off_path_inactive(tmp_path: Path) -> None:
    """#487 end to end: the switched-off pre-quant TTT stays an info finding; the twin log that
    really records the switch on (``prequant_ttt_enabled:1``) makes it the PG102 error."""
    from harness.findings import Severity
    from tests.test_rules_ttt import FIXTURES, run_check

    fixture = FIXTURES / "illegal" / "PG102_env_switched.py"
    sources = [SourceFile(fixture.name, fixture, fixture.read_text(), is_entry=True)]
    for dump, severity in (
        ("prequant_ttt_enabled:param_set:all", Severity.INFO),
        ("prequant_ttt_enabled:1", Severity.ERROR),
    ):
        (tmp_path / "train.log").write_text(f"{dump} seed:7 lr:0.1\nstep:1/10 train_loss:6.9\n")
        settings = collect_settings(tmp_path, ["train.log"], sources)
        findings = run_check([fixture], settings=settings)
        assert [(f.rule, f.severity, f.line) for f in findings] == [("PG102", severity, 40)]
