"""golf-eval end to end: report.json, exit codes, the trainer's own validation pass reproduced,
SGD TTT on a tiny reference-architecture model, a submission's peeking adapter stopped, and
``golf-eval verify`` on honest and tampered logs."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli.eval import main
from harness.data.byte_accounting import build_byte_luts, load_tokenizer
from harness.data.embedded import DataPaths
from harness.data.shards import load_validation_tokens, read_shard, write_shard
from reference_model.evaluate import eval_val_sums
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import model_from_artifact, save_artifact

SEQ_LEN = 64
VAL_TOKENS = 4 * 1024 + 1


@pytest.fixture(scope="module")
def small_data(embedded: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    """The embedded tokenizer with a short validation shard (its first ~4k tokens)."""
    folder = tmp_path_factory.mktemp("small_data")
    val = read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:VAL_TOKENS]
    write_shard(folder / "fineweb_val_000000.bin", val)
    write_shard(folder / "fineweb_train_000000.bin", val[:100])
    return DataPaths(data_dir=folder, tokenizer_path=embedded.tokenizer_path, vocab_size=embedded.vocab_size)


@pytest.fixture(scope="module")
def tiny_artifact(small_data: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small reference-architecture model with random (non-trivial) weights, as an int8 artifact."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=small_data.vocab_size, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.08)
    path = tmp_path_factory.mktemp("artifact") / "final_model.int8.ptz"
    save_artifact(model.state_dict(), path)
    return path


def _args(data: DataPaths, out: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(data.data_dir),
        "--tokenizer",
        str(data.tokenizer_path),
        "--seq-len",
        str(SEQ_LEN),
        "--chunk-tokens",
        "1024",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def plain_run(small_data: DataPaths, tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TTT-off evaluation of the tiny artifact, shared by the tests that compare with it."""
    out = tmp_path_factory.mktemp("plain") / "eval"
    assert main(["--artifact", str(tiny_artifact), *_args(small_data, out)]) == 0
    return out


def test_reference_artifact_is_audited_and_matches_the_trainers_validation_pass(
    small_data: DataPaths, tiny_artifact: Path, plain_run: Path, tmp_path: Path
) -> None:
    out = plain_run
    report = _report(out)
    assert report["schema"] == "golf-eval/1"
    assert report["audited"] is True and report["complete"] is True
    assert report["findings"] == [] and report["log"]["verified"] is True
    assert report["tokens"] == VAL_TOKENS - 1 == 4096
    assert set(report) >= {"val_bpb", "val_loss", "tokens", "bytes", "audited", "findings", "probes", "timing", "log"}
    # The trainer's own pass on the same round-trip model and tokens (stride = seq_len).
    tokens = load_validation_tokens(small_data.val_pattern, SEQ_LEN)
    luts = build_byte_luts(load_tokenizer(small_data.tokenizer_path), small_data.vocab_size)
    sums = eval_val_sums(model_from_artifact(tiny_artifact), tokens, luts, SEQ_LEN, batch_seqs=8)
    assert report["bytes"] == sums.bytes and report["tokens"] == sums.tokens
    assert report["val_bpb"] == pytest.approx(sums.val_bpb, rel=1e-12)
    assert (out / "chunks.jsonl").exists() and (out / "report.md").read_text().startswith("## golf-eval: audited")
    assert report["guards"] == {"available": True, "attempts": []}
    assert "### Runtime guards\n\nNo refused attempts.\n" in (out / "report.md").read_text()
    causality = [r for r in report["probes"]["results"] if r["name"] == "causality"]
    assert report["probes"]["available"] is True and causality[0]["status"] == "pass"
    # golf-eval verify on the honest log, then on a tampered copy
    assert main(["verify", str(out / "chunks.jsonl"), "--head", report["log"]["head_sha256"]]) == 0
    lines = (out / "chunks.jsonl").read_text().splitlines()
    del lines[2]
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(tampered)]) == 1


def test_sgd_ttt_lowers_bpb_on_embedded_tokens(
    small_data: DataPaths, tiny_artifact: Path, plain_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sgd"
    code = main(["--artifact", str(tiny_artifact), *_args(small_data, out, "--ttt", "sgd", "--ttt-lr", "0.05")])
    report = _report(out)
    assert code == 0 and report["audited"], report["findings"]
    none_bpb, sgd_bpb = _report(plain_run)["val_bpb"], report["val_bpb"]
    assert sgd_bpb < none_bpb - 0.05, (none_bpb, sgd_bpb)
    assert report["config"]["adapter"] == {
        "lr": 0.05,
        "momentum": 0.9,
        "epochs": 3,
        "grad_clip": 1.0,
        "freeze_blocks": 0,
        "batch_seqs": 32,
        "seq_len": SEQ_LEN,
    }


def test_lora_settings_reach_the_adapter_and_the_report(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lora"
    settings = ("--ttt", "lora", "--lora-rank", "2", "--lora-lr", "0.03", "--lora-targets", "all", "--max-chunks", "2")
    assert main(["--artifact", str(tiny_artifact), *_args(small_data, out, *settings)]) == 1  # partial: never audited
    report = _report(out)
    expected = {
        "lora_rank": 2,
        "lora_lr": 0.03,
        "lora_targets": "all",
        "epochs": 3,
        "grad_clip": 1.0,
        "seq_len": SEQ_LEN,
    }
    assert report["config"]["ttt"] == "lora" and report["config"]["adapter"] == expected
    assert report["findings"] == [] and report["tokens"] == 2048
    header = json.loads((out / "chunks.jsonl").read_text().splitlines()[0])
    assert header["adapter_name"] == "lora" and header["config"]["adapter"] == expected
    assert (
        main(
            [
                "--artifact",
                str(tiny_artifact),
                *_args(small_data, tmp_path / "bad", "--ttt", "lora", "--lora-rank", "0"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip().endswith("--lora-rank must be ≥ 1 and --lora-lr positive")


PEEKING_ENTRY = """
import torch
from reference_model.quantize import model_from_artifact

def load_model(artifact_path, device):
    return model_from_artifact(artifact_path).to(device)

class Peek:
    name = "peek"
    def adapt(self, model, scored, chunk):
        future = scored.read(chunk.token_end, chunk.token_end + 64)   # the next, unscored chunk

def make_adapter(model, config):
    return Peek()
"""


def test_submission_adapter_reading_unscored_tokens_is_reported(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "golf_entry.py").write_text(textwrap.dedent(PEEKING_ENTRY))
    (folder / "train_gpt.py").write_text("print('training happens elsewhere')\n")
    out = tmp_path / "out"
    code = main([str(folder), "--artifact", str(tiny_artifact), *_args(small_data, out, "--ttt", "sgd")])
    report = _report(out)
    assert code == 1 and report["audited"] is False
    runtime = [f for f in report["findings"] if f["rule"] == "PG101"]
    assert runtime == [
        {
            "rule": "PG101",
            "severity": "error",
            "file": "golf_entry.py",
            "line": 0,
            "message": "adapter tried to read unscored tokens: asked for [1025, 1089) but only [0, 1025) are scored",
            "path": [],
        }
    ]
    assert report["stopped"].startswith("stopped after chunk 0")
    assert report["log"]["verified"] is True  # an honest, shortened log


def test_bad_inputs_and_usage_give_one_line_errors(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "broken.ptz"
    corrupt.write_bytes(b"not a zlib stream")
    assert main(["--artifact", str(corrupt), *_args(small_data, tmp_path / "a")]) == 3
    assert main(["--artifact", str(tmp_path / "absent.ptz"), *_args(small_data, tmp_path / "b")]) == 3
    assert main(["--artifact", str(tiny_artifact), *_args(small_data, tmp_path / "c", "--ttt", "magic")]) == 2
    assert main(["--artifact", str(tiny_artifact), *_args(small_data, tmp_path / "d", "--stride", "65")]) == 2
    assert main(["verify", str(tmp_path / "nothing.jsonl")]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 5 and all(line.startswith("golf-eval: error: ") for line in errors)
    assert "artifact" in errors[1] and "does not exist" in errors[1]
    assert "unknown TTT adapter 'magic'" in errors[2]
    assert "stride 65 is larger than seq_len 64" in errors[3]


def test_validation_stream_without_bytes_is_refused(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream of control tokens only scores 0 bytes: BPB over it is a bad input, not a score."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_shard(folder / "fineweb_val_000000.bin", np.ones(VAL_TOKENS, dtype=np.uint16))
    empty = DataPaths(data_dir=folder, tokenizer_path=small_data.tokenizer_path, vocab_size=small_data.vocab_size)
    assert main(["--artifact", str(tiny_artifact), *_args(empty, tmp_path / "out")]) == 3
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line]
    assert error.startswith("golf-eval: error: ") and "the validation targets hold 0 bytes" in error


class _Session:
    def __init__(self) -> None:
        self.findings: list = []

    def to_json(self) -> dict:
        return {
            "attempts": [
                {
                    "rule": "PG301",
                    "event": "socket.connect",
                    "target": "10.0.0.1:443",
                    "file": "<runtime>",
                    "line": 0,
                    "count": 2,
                }
            ]
        }


def test_probe_and_guard_plugins_are_called_and_reported(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call sites for the runtime probes and guards, exercised with stand-in modules."""
    import contextlib
    import types

    from harness.evaluate.evaluator import EvalConfig
    from harness.evaluate.pipeline import EvalRequest, run_evaluation
    from harness.findings import Finding, Severity

    calls: dict = {}

    class Outcome:
        findings = [Finding("PG201", Severity.ERROR, "<model>", 0, "logits at position 3 changed when token 5 changed")]

        def to_json(self) -> dict:
            return {"causality": {"positions": 4, "max_abs_diff": 0.5, "tolerance": 1e-5}}

    def run_probes(
        model: torch.nn.Module,
        tokens: torch.Tensor,
        *,
        seq_len: int,
        vocab_size: int,
        device: torch.device,
        bos_id: int,
        document_isolation: bool | None,
    ) -> Outcome:
        calls["probes"] = (
            tuple(tokens.shape),
            seq_len,
            vocab_size,
            str(device),
            bos_id,
            model.training,
            document_isolation,
        )
        return Outcome()

    @contextlib.contextmanager
    def guarded(*, allowed_paths: list[Path], forbidden_paths: list[Path]) -> Iterator[_Session]:
        calls["guards"] = ([Path(p).name for p in allowed_paths], [Path(p).name for p in forbidden_paths])
        session = _Session()
        yield session
        session.findings.append(Finding("PG301", Severity.ERROR, "<runtime>", 0, "network access refused"))

    from harness.evaluate import contestant, pipeline

    monkeypatch.setattr(contestant, "probes", types.SimpleNamespace(run_probes=run_probes))
    monkeypatch.setattr(pipeline, "guarded", guarded)
    out = tmp_path / "out"
    request = EvalRequest(
        submission=None,
        artifact=tiny_artifact,
        data=small_data,
        config=EvalConfig(seq_len=SEQ_LEN, chunk_tokens=1024),
        out_dir=out,
    )
    outcome = run_evaluation(request)
    # the probes read the first window's inputs: nothing scoring would not hand the model first anyway
    assert calls["probes"] == ((SEQ_LEN,), SEQ_LEN, small_data.vocab_size, "cpu", 1, False, None)
    assert calls["guards"] == (
        ["final_model.int8.ptz", small_data.tokenizer_path.name, "fineweb_val_000000.bin", "out"],
        ["fineweb_train_000000.bin"],
    )
    report = _report(out)
    assert [f["rule"] for f in report["findings"]] == ["PG201", "PG301"]
    assert report["probes"] == {
        "available": True,
        "causality": {"positions": 4, "max_abs_diff": 0.5, "tolerance": 1e-5},
    }
    assert report["guards"] == {
        "available": True,
        "attempts": [
            {
                "rule": "PG301",
                "event": "socket.connect",
                "target": "10.0.0.1:443",
                "file": "<runtime>",
                "line": 0,
                "count": 2,
            }
        ],
    }
    assert report["audited"] is False and outcome.audited is False
    assert report["log"]["verified"] is True and report["complete"] is True


def test_no_submission_evaluates_the_quick_start_reference_artifact(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``golf-eval`` with no SUBMISSION picks up ``out/reference/`` (golf-train's default output)."""
    reference = tmp_path / "out" / "reference"
    reference.mkdir(parents=True)
    (reference / "final_model.int8.ptz").write_bytes(tiny_artifact.read_bytes())
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(small_data.data_dir), "--tokenizer", str(small_data.tokenizer_path), "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "eval" / "report.json").read_text())
    assert report["submission"] is None and report["config"]["seq_len"] == 256  # the tiny preset's
    assert report["artifact"]["name"] == "final_model.int8.ptz" and report["audited"] is True


def test_entry_point_with_a_dataclass_and_a_broken_entry(
    small_data: DataPaths, tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "train_gpt.py").write_text("print('training happens elsewhere')\n")
    (folder / "golf_entry.py").write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        from reference_model.quantize import model_from_artifact

        @dataclass
        class Options:
            scale: float = 1.0

        def load_model(artifact_path, device):
            model = model_from_artifact(artifact_path)
            model.options = Options()
            return model.to(device)
    """)
    )
    out = tmp_path / "ok"
    # Exit 0: the bare folder lacks README/submission.json/logs (PG401 warnings since issue 12:
    # records were merged without a log), and the entry point itself loads, scores everything
    # and raises no runtime finding.
    assert main([str(folder), "--artifact", str(tiny_artifact), *_args(small_data, out)]) == 0
    report = _report(out)
    assert report["tokens"] == 4096 and report["complete"] and report["log"]["verified"] is True
    assert report["findings"] and all(f["rule"].startswith("PG4") for f in report["findings"])
    assert {f["severity"] for f in report["findings"]} == {"warning"}
    (folder / "golf_entry.py").write_text("def load_model(artifact_path, device):\n    return 42\n")
    assert main([str(folder), "--artifact", str(tiny_artifact), *_args(small_data, tmp_path / "bad")]) == 3
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("golf_entry.py: load_model must return an nn.Module with forward_logits(input_ids)")
    )


def test_partial_run_is_reported_and_never_audited(small_data: DataPaths, tiny_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    assert main(["--artifact", str(tiny_artifact), *_args(small_data, out, "--max-chunks", "2")]) == 1
    report = _report(out)
    assert report["tokens"] == 2048 and report["complete"] is False and report["audited"] is False
    assert report["stopped"] == (
        "partial evaluation (--max-chunks): scored 2,048 of 4,096 targets; a partial run is never audited"
    )
    assert report["log"]["verified"] is True and report["findings"] == []
