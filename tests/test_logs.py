"""Training-log parsing: configuration dumps, seeds, clocks, sizes and score families in every
log style the package checks meet."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from harness.check.pkg.logs import config_differences, decimals_of, parse_log

_BUILDER = Path(__file__).parent / "fixtures" / "packages" / "builder.py"
_spec = importlib.util.spec_from_file_location("package_fixture_builder", _BUILDER)
builder = importlib.util.module_from_spec(_spec)
sys.modules["package_fixture_builder"] = builder
_spec.loader.exec_module(builder)

THREE_STAGES = ("final_int8_zlib_roundtrip", "final_sliding_window", "legal_ttt")


def _log(style: str, **changes: object):
    spec = builder.LogSpec(seed=1337, val_loss=2.07312408, style=style, **changes)
    return parse_log(builder.render_log(spec, code_bytes=4321), "logs/train_seed1337.log")


def test_reference_style_reads_kv_lines_after_the_code_copy() -> None:
    log = _log("reference")
    assert log.seed == 1337
    assert log.hparams["num_layers"] == "9"
    assert log.hparams["max_wallclock_seconds"] == "600.000"
    # The copy of the source code above the separator is not configuration.
    assert "seed_results" not in log.hparams and "model" not in log.hparams
    assert "iterations" in log.hparams and log.hparams["iterations"] == "20000"


@pytest.mark.parametrize("style", ["block", "timestamped"])
def test_block_and_timestamped_styles_give_identical_facts(style: str) -> None:
    log = _log(style, families=THREE_STAGES)
    assert log.seed == 1337 and log.hparam_lines["seed"] == 10
    assert log.hparams["run_id"] == "run_1337_a81f"
    assert (log.train_time_ms, log.train_time_line, log.last_step_avg_ms) == (599_962.0, 19, 43.54)
    assert log.step_lines == 5
    size = log.artifact_size()
    assert (size.label, size.size_bytes, size.line) == ("int8+zlib", 15_863_533, 25)
    assert [(s.size_bytes, s.line) for s in log.code_sizes] == [(4321, 22)]
    assert [f.family for f in log.families()] == list(THREE_STAGES)


def test_headline_prefers_ttt_then_exact_digits() -> None:
    log = _log("block", families=THREE_STAGES)
    headline = log.headline()
    assert headline.family == "legal_ttt"
    assert headline.val_bpb == float(f"{2.07312408 * builder.BPB_PER_NAT:.8f}")
    assert (headline.bpb_decimals, headline.line, headline.eval_time_ms) == (8, 31, 1386.0)


def test_headline_ranks_stage_over_order_and_skips_diagnostics() -> None:
    text = "\n".join(
        [
            "step:100/100 val_loss:2.5000 val_bpb:1.4800 train_time:1000ms step_avg:10.00ms",
            "quantized_ttt val_loss:2.1000 val_bpb:1.2400 eval_time:300000ms",
            "quantized_sliding_window val_loss:2.2000 val_bpb:1.3000 eval_time:90000ms",
            "diagnostic pre-quant post-ema val_loss:2.0000 val_bpb:1.1800 eval_time:5000ms",
            "ttt_chunk [3/50] val_loss:2.0500 val_bpb:1.2100",
        ]
    )
    log = parse_log(text, "train.log")
    assert [f.family for f in log.families()] == ["quantized_ttt", "quantized_sliding_window"]
    assert log.headline().family == "quantized_ttt"
    assert (log.headline().val_bpb, log.headline().bpb_decimals) == (1.24, 4)


def test_unlabelled_total_is_used_only_without_a_labelled_one() -> None:
    log = parse_log("step:1/1 train_time:5ms\nTotal submission size: 15,999,990 bytes\n", "a.log")
    assert log.artifact_size().size_bytes == 15_999_990


def test_train_time_in_seconds_and_seed_from_file_name() -> None:
    text = "num_layers: 11\nstep:9/9 train_loss:2.1 train_time:598.5s\nlegal_ttt_exact val_loss:2.0 val_bpb:1.1\n"
    log = parse_log(text, "runs/train_seed_2024.txt")
    assert (log.seed, log.hparam_lines.get("seed", 0)) == (2024, 0)
    assert log.train_time_ms == 598_500.0
    assert log.hparams == {"num_layers": "11"}


def test_file_without_steps_or_scores_is_not_a_training_log() -> None:
    assert not parse_log("pip freeze\ntorch==2.8.0\n", "requirements-lock.txt").is_training_log


def test_config_differences_ignore_seed_run_id_and_where_inputs_live() -> None:
    first = _log("block", hparams={**builder.BASE_HPARAMS, "data_path": "./data/datasets/fineweb10B_sp1024"})
    moved = _log("timestamped", hparams={**builder.BASE_HPARAMS, "data_path": "/scratch/fineweb10B_sp1024/"})
    assert config_differences(first, moved) == []
    other_data = _log("block", hparams={**builder.BASE_HPARAMS, "data_path": "./data/datasets/fineweb10B_sp8192"})
    assert config_differences(first, other_data) == [
        ("data_path", "./data/datasets/fineweb10B_sp1024", "./data/datasets/fineweb10B_sp8192")
    ]
    reference_style = parse_log(builder.render_log(builder.LogSpec(seed=7, val_loss=2.07), 4321), "b.log")
    assert config_differences(_log("block"), reference_style) == [
        ("pattern", None, "./data/datasets/fineweb10B_sp1024/fineweb_val_*.bin"),
        ("tokens", None, "62021632"),
        ("val_loader", None, "shards"),
    ]
    third = _log("block", hparams={**builder.BASE_HPARAMS, "num_layers": "11"})
    assert config_differences(_log("block"), third) == [("num_layers", "9", "11")]
    assert config_differences(
        _log("block"), _log("timestamped", hparams={**builder.BASE_HPARAMS, "matrix_lr": "0.05"})
    ) == [("matrix_lr", "0.04", "0.05")]


def test_decimals_of_counts_shown_digits() -> None:
    assert [decimals_of(x) for x in ("1.2244", "1.22436570", "2", "1e-3", "1.5e2")] == [4, 8, 0, 3, 0]


REAL_RUN = Path(__file__).parent / "fixtures" / "packages" / "reference_run"


@pytest.mark.parametrize(
    ("seed", "loss", "bpb", "train_ms", "total", "code"),
    [
        (42, 7.46723142, 4.32568236, 22111.0, 977_554, 73_028),
        (1337, 7.43537112, 4.30722605, 38653.0, 982_622, 73_028),
        (2024, 7.52344680, 4.35824729, 58104.0, 977_913, 73_727),
    ],
)
def test_logs_written_by_the_reference_trainer(
    seed: int, loss: float, bpb: float, train_ms: float, total: int, code: int
) -> None:
    name = f"train_seed{seed}.log"
    log = parse_log((REAL_RUN / name).read_text(), name)
    assert (log.seed, log.hparam_lines.get("seed", 0)) == (seed, 5)
    assert (log.hparams["num_layers"], log.hparams["model_dim"], log.hparams["tie_embeddings"]) == ("4", "128", "True")
    assert "run_id" not in log.hparams  # logged with an empty value
    assert (log.train_time_ms, log.train_time_line) == (train_ms, 51)
    headline = log.headline()
    assert (headline.family, headline.val_loss, headline.val_bpb, headline.line) == (
        "final_int8_zlib_roundtrip",
        loss,
        bpb,
        56,
    )
    assert headline.eval_time_ms is not None and headline.eval_time_ms > 60_000
    assert (log.artifact_size().size_bytes, log.artifact_size().line) == (total, 54)
    assert [s.size_bytes for s in log.code_sizes] == [code]
    reference = parse_log((REAL_RUN / "train_seed42.log").read_text(), "train_seed42.log")
    assert config_differences(reference, log) == []  # out_dir and seed differ, nothing else


def test_a_labelled_one_line_dump_is_read_as_its_pairs() -> None:
    text = (
        "Hyperparameters: data_path:./data/fineweb10B_sp1024 seq_len:1024 seed:42 ttt_enabled:1\n"
        "step:0/2000 train_loss:5.0000\n"
        "final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000\n"
    )
    log = parse_log(text, "train_seed42.log")
    assert log.hparams == {"data_path": "./data/fineweb10B_sp1024", "seq_len": "1024", "seed": "42", "ttt_enabled": "1"}
    assert log.seed == 42 and log.hparam_lines["ttt_enabled"] == 1
    other = parse_log(text.replace("seed:42", "seed:1337"), "train_seed1337.log")
    assert config_differences(log, other) == []  # only the seed differs between the two runs
