"""Trainer pieces (loader, Muon, schedule, validation sums, env config) and a tiny CPU training run."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data.byte_accounting import build_byte_luts, load_tokenizer, stream_bytes
from harness.data.embedded import DataPaths
from harness.data.shards import load_validation_tokens, read_shard, write_shard
from harness.errors import DataFormatError, UsageError
from reference_model.data import DistributedTokenLoader, TokenStream
from reference_model.evaluate import eval_val, eval_val_sums
from reference_model.model import GPT, GPTConfig
from reference_model.optim import OptimizerSettings, build_optimizers, muon_momentum_at, zeropower_via_newtonschulz5
from reference_model.quantize import load_artifact
from reference_model.train import CODE_MODULES, TrainConfig, code_files, lr_multiplier, train


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny tensors gain nothing from more, and on a shared CPU
    two spinning OpenMP threads make every op wait for a second core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SMALL_DATA_VAL_TOKENS = 8 * 128 + 1


def write_small_data(source: DataPaths, folder: Path, train_tokens: int = 120_000) -> Path:
    """A slice of the embedded data: fast to train and score, same tokenizer and format."""
    folder.mkdir(parents=True, exist_ok=True)
    train = read_shard(sorted(source.data_dir.glob("fineweb_train_*.bin"))[0])[:train_tokens]
    write_shard(folder / "fineweb_train_000000.bin", train[: train_tokens // 2])
    write_shard(folder / "fineweb_train_000001.bin", train[train_tokens // 2 :])
    val = read_shard(sorted(source.data_dir.glob("fineweb_val_*.bin"))[0])[: SMALL_DATA_VAL_TOKENS + 50]
    write_shard(folder / "fineweb_val_000000.bin", val)
    return folder


@pytest.fixture(scope="module")
def small_data(embedded: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_data(embedded, tmp_path_factory.mktemp("small_data"))


def small_config(data_dir: Path, tokenizer: Path, out_dir: Path, **overrides: object) -> TrainConfig:
    """2×64 model, 40 steps of 2048 tokens, validation at step 0 and at the end: a few seconds."""
    fields: dict[str, object] = {
        "data_path": str(data_dir),
        "tokenizer_path": str(tokenizer),
        "out_dir": str(out_dir),
        "run_id": "test",
        "num_layers": 2,
        "model_dim": 64,
        "num_heads": 4,
        "num_kv_heads": 2,
        "train_seq_len": 128,
        "train_batch_tokens": 2048,
        "micro_batches": 2,
        "iterations": 40,
        "warmdown_iters": 10,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 40,
        "val_batch_size": 2048,
        "train_log_every": 10,
        "verbose": False,
    }
    return dataclasses.replace(TrainConfig.tiny(), **(fields | overrides))


def test_tiny_training_run_lowers_validation_loss_and_writes_the_artifact(
    small_data: Path, embedded: DataPaths, tmp_path: Path
) -> None:
    result = train(small_config(small_data, embedded.tokenizer_path, tmp_path))
    log = result.log_path.read_text(encoding="utf-8").splitlines()
    assert log[0] == f"data_path: {small_data}"
    assert "iterations: 40" in log and "train_seq_len: 128" in log and "world_size: 1" in log
    val_lines = [
        line
        for line in log
        if re.fullmatch(r"step:\d+/40 val_loss:[\d.]+ val_bpb:[\d.]+ train_time:\d+ms step_avg:[\d.]+ms", line)
    ]
    assert [line.split()[0] for line in val_lines] == ["step:0/40", "step:40/40"]
    first_loss = float(val_lines[0].split()[1].removeprefix("val_loss:"))
    assert first_loss == pytest.approx(math.log(1024), abs=0.05)  # fresh model ≈ uniform
    assert result.prequant_val_loss < first_loss - 2.0
    train_steps = [
        int(m.group(1))
        for line in log
        if (m := re.fullmatch(r"step:(\d+)/40 train_loss:[\d.]+ train_time:\d+ms step_avg:[\d.]+ms", line))
    ]
    assert train_steps == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40]
    assert result.steps == 40
    # the final score is the dequantized model's, close to but not equal to the pre-quant score
    assert abs(result.val_loss - result.prequant_val_loss) < 0.02
    assert result.val_loss != result.prequant_val_loss
    assert (
        log[-2]
        == f"final_int8_zlib_roundtrip val_loss:{result.val_loss:.4f} val_bpb:{result.val_bpb:.4f} "
        + log[-2].split()[-1]
    )
    assert log[-1] == f"final_int8_zlib_roundtrip_exact val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f}"
    # sizes: artifact file bytes + the trainer's source bytes
    assert result.model_bytes == result.artifact_path.stat().st_size
    assert result.code_bytes == sum(len(p.read_bytes()) for p in code_files())
    assert f"Total submission size int8+zlib: {result.total_bytes} bytes (cap 16000000)" in log
    assert result.under_cap
    # the sums are exact over the whole validation stream
    val_tokens = load_validation_tokens(small_data / "fineweb_val_*.bin", 128)
    assert result.sums.tokens == SMALL_DATA_VAL_TOKENS - 1
    assert result.sums.bytes == stream_bytes(val_tokens, build_byte_luts(load_tokenizer(embedded.tokenizer_path), 1024))
    saved = json.loads((tmp_path / "train_result.json").read_text())
    assert float.fromhex(saved["nll_sum_hex"]) == result.sums.nll_sum
    assert saved["val_bpb"] == result.val_bpb and saved["total_bytes"] == result.total_bytes
    # re-scoring the written artifact reproduces the trainer's round-trip score exactly
    model = GPT(GPTConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    model.load_state_dict(load_artifact(result.artifact_path))
    luts = build_byte_luts(load_tokenizer(embedded.tokenizer_path), 1024)
    assert eval_val_sums(model, val_tokens, luts, 128, batch_seqs=8) == result.sums


def test_wallclock_cap_stops_training_early(small_data: Path, embedded: DataPaths, tmp_path: Path) -> None:
    result = train(
        small_config(
            small_data,
            embedded.tokenizer_path,
            tmp_path,
            iterations=100_000,
            max_wallclock_seconds=0.5,
            artifact_name="m.ptzst",
        )
    )
    log = result.log_path.read_text(encoding="utf-8")
    assert result.steps < 100_000
    assert "stopping_early: wallclock_cap train_time:" in log
    assert f"step:{result.steps}/100000 val_loss:" in log
    assert "final_int8_zstd_roundtrip_exact val_loss:" in log
    assert result.artifact_path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"


def test_vocab_mismatch_is_a_data_error(small_data: Path, embedded: DataPaths, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="has 1024 pieces but VOCAB_SIZE=512"):
        train(small_config(small_data, embedded.tokenizer_path, tmp_path, vocab_size=512))


def test_lr_multiplier_by_iterations_and_by_wallclock() -> None:
    by_steps = TrainConfig(iterations=100, warmdown_iters=20, max_wallclock_seconds=0)
    assert [lr_multiplier(by_steps, s, 0.0) for s in (0, 79, 80, 90, 99)] == [1.0, 1.0, 1.0, 0.5, 0.05]
    by_time = TrainConfig(iterations=10_000, warmdown_iters=100, max_wallclock_seconds=10.0)
    # 10 ms/step so far ⇒ warmdown spans the last 1000 ms before the 10 s cap
    assert lr_multiplier(by_time, 500, 5_000.0) == 1.0
    assert lr_multiplier(by_time, 950, 9_500.0) == pytest.approx(0.5)
    assert lr_multiplier(by_time, 1000, 10_500.0) == 0.0
    assert lr_multiplier(TrainConfig(warmdown_iters=0), 19_999, 0.0) == 1.0


def test_env_overrides_and_bad_values() -> None:
    config = TrainConfig.tiny().with_env(
        {"ITERATIONS": "7", "TIE_EMBEDDINGS": "0", "MATRIX_LR": "0.02", "RUN_ID": "x", "VERBOSE": "0"}
    )
    assert (config.iterations, config.tie_embeddings, config.matrix_lr, config.run_id) == (7, False, 0.02, "x")
    assert config.verbose is True  # not an env-controlled knob
    assert config.model_dim == 128
    with pytest.raises(UsageError, match=r"environment variable ITERATIONS='lots' is not a valid int"):
        TrainConfig().with_env({"ITERATIONS": "lots"})
    with pytest.raises(UsageError, match="impossible model shape"):
        TrainConfig(model_dim=100, num_heads=8).model_config()


def test_code_modules_are_the_trainer_sources() -> None:
    names = [p.name for p in code_files()]
    assert names == [
        "model.py",
        "optim.py",
        "data.py",
        "quantize.py",
        "evaluate.py",
        "train.py",
        "shards.py",
        "byte_accounting.py",
        "errors.py",
    ]
    assert len(CODE_MODULES) == 9


def _stream_dir(tmp_path: Path) -> Path:
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(0, 10))
    write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(100, 107))
    return tmp_path


def test_token_stream_crosses_shards_and_wraps(tmp_path: Path) -> None:
    stream = TokenStream(_stream_dir(tmp_path) / "fineweb_train_*.bin")
    assert stream.take(8).tolist() == list(range(8))
    assert stream.take(5).tolist() == [8, 9, 100, 101, 102]
    assert stream.take(6).tolist() == [103, 104, 105, 106, 0, 1]


def test_two_ranks_see_the_same_global_batch_as_one_process(tmp_path: Path) -> None:
    pattern = _stream_dir(tmp_path) / "fineweb_train_*.bin"
    cpu = torch.device("cpu")
    single = DistributedTokenLoader(pattern, 0, 1, cpu)
    micro = [single.next_batch(8, 2, grad_accum_steps=2) for _ in range(2)]
    ranks = [DistributedTokenLoader(pattern, r, 2, cpu).next_batch(8, 2, grad_accum_steps=1) for r in range(2)]
    for (x1, y1), (x2, y2) in zip(micro, ranks):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert micro[0][0].tolist() == [[0, 1], [2, 3]] and micro[0][1].tolist() == [[1, 2], [3, 4]]
    assert micro[1][0].tolist() == [[5, 6], [7, 8]] and micro[1][1].tolist() == [[6, 7], [8, 9]]
    with pytest.raises(UsageError, match="not a positive multiple of seq_len 3"):
        single.next_batch(8, 3, grad_accum_steps=1)


def test_newton_schulz_orthogonalises_and_muon_scales_tall_matrices() -> None:
    torch.manual_seed(0)
    grad = torch.randn(64, 32) @ torch.diag(torch.logspace(-1, 0, 32))  # condition number ~10
    ortho = zeropower_via_newtonschulz5(grad).float()
    singular = torch.linalg.svdvals(ortho)
    assert ortho.shape == (64, 32)
    assert 0.5 < singular.min().item() and singular.max().item() < 1.3
    model = GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2))
    optimizers, muon = build_optimizers(model, OptimizerSettings())
    assert [type(o).__name__ for o in optimizers] == ["Adam", "Muon", "Adam"]
    muon_params = {id(p) for group in muon.param_groups for p in group["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in muon_params}
    assert names == {
        f"blocks.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj")
    }
    assert [g["lr"] for o in optimizers for g in o.param_groups] == [0.05, 0.04, 0.04]
    # fc is [64, 32]: its update is orthogonalised then scaled by sqrt(64/32)
    fc = model.blocks[0].mlp.fc.weight
    fc.grad = grad.clone()
    before = fc.detach().clone()
    muon.step()
    nesterov = grad + 0.95 * grad  # first step: buffer = g, Nesterov update g + m·buffer
    expected_update = (
        zeropower_via_newtonschulz5(nesterov) * math.sqrt(2.0)
    ).float()  # scaled in bf16, as the baseline
    assert torch.allclose(before - fc.detach(), expected_update * 0.04, atol=1e-7, rtol=0)
    assert model.blocks[0].mlp.proj.weight.grad is None and torch.count_nonzero(model.blocks[0].mlp.proj.weight) == 0
    assert [muon_momentum_at(s, OptimizerSettings()) for s in (0, 250, 500, 900)] == pytest.approx(
        [0.85, 0.90, 0.95, 0.95]
    )


def test_untied_model_gets_its_own_head_optimizer() -> None:
    model = GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, tie_embeddings=False))
    optimizers, _ = build_optimizers(model, OptimizerSettings())
    assert [g["lr"] for o in optimizers for g in o.param_groups] == [0.6, 0.008, 0.04, 0.04]


def test_validation_sums_do_not_depend_on_batching_or_rank_split(small_data: Path, embedded: DataPaths) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokens = load_validation_tokens(small_data / "fineweb_val_*.bin", 128)
    luts = build_byte_luts(load_tokenizer(embedded.tokenizer_path), 1024)
    whole = eval_val_sums(model, tokens, luts, 128, batch_seqs=8)
    one_by_one = eval_val_sums(model, tokens, luts, 128, batch_seqs=1)
    parts = [eval_val_sums(model, tokens, luts, 128, batch_seqs=2, rank=r, world_size=3) for r in range(3)]
    assert (whole.tokens, whole.bytes) == (one_by_one.tokens, one_by_one.bytes) == (1024, stream_bytes(tokens, luts))
    assert [p.tokens for p in parts] == [2 * 128, 3 * 128, 3 * 128]
    assert sum(p.bytes for p in parts) == whole.bytes
    assert one_by_one.nll_sum == pytest.approx(whole.nll_sum, rel=1e-12)
    assert sum(p.nll_sum for p in parts) == pytest.approx(whole.nll_sum, rel=1e-12)
    loss, bpb = eval_val(model, tokens, luts, 128, batch_seqs=8)
    assert loss == whole.nll_sum / 1024
    assert bpb == pytest.approx(loss / math.log(2) * 1024 / whole.bytes, rel=1e-12)
    assert model.training  # the pass restores the mode it found


def test_golf_train_cli_runs_and_reports(
    small_data: Path,
    embedded: DataPaths,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.cli.train import main

    for name, value in {
        "NUM_LAYERS": "2",
        "MODEL_DIM": "64",
        "TRAIN_SEQ_LEN": "128",
        "TRAIN_BATCH_TOKENS": "1024",
        "VAL_BATCH_SIZE": "2048",
        "MAX_WALLCLOCK_SECONDS": "0",
        "RUN_ID": "cli",
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    code = main(
        [
            "--data",
            str(small_data),
            "--tokenizer",
            str(embedded.tokenizer_path),
            "--out",
            str(out),
            "--iterations",
            "3",
            "--seed",
            "5",
            "--quiet",
            "--zstd",
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    saved = json.loads((out / "train_result.json").read_text())
    assert code == 0
    assert saved["steps"] == 3 and saved["artifact_path"] == str(out / "final_model.int8.ptzst")
    assert f"{saved['val_bpb']:.8f}" in printed
    assert f"{saved['total_bytes']:,} (under the 16,000,000 cap)" in printed
    assert "seed: 5" in (out / "logs" / "cli.txt").read_text().splitlines()


@pytest.mark.parametrize(
    ("argv", "exit_code", "message"),
    [
        (["--iterations", "many"], 2, "argument --iterations: invalid int value: 'many'"),
        (["--tiny", "--full"], 2, "not allowed with argument"),
        (["--data", "/nonexistent"], 2, "--data and --tokenizer must be given together"),
        (
            ["--data", "/nonexistent/dir", "--tokenizer", "/nonexistent/t.model"],
            3,
            "data directory /nonexistent/dir does not exist",
        ),
        (["--threads", "0"], 2, "--threads must be at least 1, got 0"),
    ],
)
def test_golf_train_cli_errors_are_one_line(
    argv: list[str], exit_code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli.train import main

    assert main(argv) == exit_code
    err = capsys.readouterr().err
    assert err.startswith("golf-train: error: ") and message in err
    assert err.count("\n") == 1


def test_bad_artifact_suffix_is_refused_before_training(small_data: Path, embedded: DataPaths, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"artifact name 'model.pt' must end in \.ptz \(zlib\) or \.ptzst \(zstd\)"):
        train(small_config(small_data, embedded.tokenizer_path, tmp_path, artifact_name="model.pt"))
    assert not (tmp_path / "logs").exists()


def test_module_entry_point_reads_env_and_reports_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reference_model.train import main

    monkeypatch.setenv("DATA_PATH", str(tmp_path / "no-data"))
    monkeypatch.setenv("TOKENIZER_PATH", str(tmp_path / "no.model"))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("RUN_ID", "env")
    assert main() == 3
    err = capsys.readouterr().err
    assert (
        err
        == f"reference_model.train: error: tokenizer {tmp_path / 'no.model'}: unreadable (No such file or directory)\n"
    )
    assert f"data_path: {tmp_path / 'no-data'}" in (tmp_path / "out" / "logs" / "env.txt").read_text().splitlines()
