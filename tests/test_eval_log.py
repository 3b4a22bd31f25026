"""The audit log and ``verify``: an honest log verifies exactly; every kind of tampering
(edit, delete, reorder, duplicate, truncate, forged re-chaining) fails with a specific message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import DataFormatError
from harness.evaluate.adapters import make_adapter
from harness.evaluate.adapters.base import AdapterConfig
from harness.evaluate.evaluator import EvalConfig, EvalInputs, evaluate
from harness.evaluate.log import GENESIS_HASH, encode_line, line_hash
from harness.evaluate.verify import verify_log


class Bigram(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(9)))

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids]


@pytest.fixture(scope="module")
def honest_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    """One log without TTT and one with SGD TTT (fingerprints change between chunks)."""
    folder = tmp_path_factory.mktemp("logs")
    tokens = np.random.default_rng(7).integers(0, 8, size=801).astype(np.uint16)
    target_bytes = np.random.default_rng(8).integers(1, 3, size=800).astype(np.int64)
    logs = {}
    for ttt in ("none", "sgd"):
        model = Bigram(8)
        adapter_config = AdapterConfig(seq_len=25, lr=0.1)
        config = EvalConfig(seq_len=25, stride=10, chunk_tokens=200, ttt=ttt, adapter=adapter_config)
        path = folder / f"{ttt}.jsonl"
        result = evaluate(
            model, make_adapter(ttt, model, adapter_config), EvalInputs(tokens, target_bytes, 8), config, path
        )
        logs[ttt] = (path, result.val_bpb)
    return logs


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "tampered.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _rechain(records: list[dict]) -> list[str]:
    """What a careful forger does: rewrite every ``prev`` so the chain is consistent again."""
    lines, previous = [], GENESIS_HASH
    for record in records:
        text = encode_line({**record, "prev": previous})
        lines.append(text)
        previous = line_hash(text)
    return lines


def test_honest_logs_verify_and_reproduce_the_bpb(honest_logs: dict[str, tuple[Path, float]]) -> None:
    for path, bpb in honest_logs.values():
        result = verify_log(path)
        assert result.ok and result.complete, result.errors
        assert result.val_bpb == bpb  # bit-exact: recomputed from the logged float.hex sums
        assert result.tokens == 800 and result.chunks == 4
        records = [json.loads(line) for line in _lines(path)]
        assert [r["kind"] for r in records] == ["header", "chunk", "chunk", "chunk", "chunk", "summary"]
        assert records[0]["prev"] == GENESIS_HASH
        assert result.head_sha256 == line_hash(_lines(path)[-1])


def test_sgd_log_records_changing_fingerprints(honest_logs: dict[str, tuple[Path, float]]) -> None:
    records = [json.loads(line) for line in _lines(honest_logs["sgd"][0])]
    chunks = records[1:-1]
    assert chunks[1]["fp_after_prev_adapt"] != chunks[0]["fp_after_score"]
    assert all(c["fp_before_score"] == c["fp_after_score"] == c["fp_after_prev_adapt"] for c in chunks)
    assert records[-1]["state_sha256_end"] != records[0]["state_sha256_start"]


def test_edited_chunk_line_breaks_the_chain(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])
    record = json.loads(lines[2])
    record["nll_sum"] = (float.fromhex(record["nll_sum"]) * 0.9).hex()
    lines[2] = encode_line(record)
    result = verify_log(_write(tmp_path, lines))
    assert not result.ok
    assert "line 4: hash chain broken (prev does not match the SHA-256 of line 3)" in result.errors
    assert "line 3: chunk 1: running_bpb does not match the logged sums" in result.errors


def test_deleted_chunk_line(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])  # chunks score [0,205) [205,405) [405,605) [605,800)
    del lines[2]
    errors = verify_log(_write(tmp_path, lines)).errors
    assert errors[0] == "line 3: hash chain broken (prev does not match the SHA-256 of line 2)"
    assert "line 3: chunk 2 is out of order (expected chunk 1)" in errors
    assert (
        "line 3: chunk 2 starts at target 405 but scoring had reached 205: targets [205, 405) were never scored"
        in errors
    )


def test_reordered_chunk_lines(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])
    lines[2], lines[3] = lines[3], lines[2]
    errors = verify_log(_write(tmp_path, lines)).errors
    assert "line 3: hash chain broken (prev does not match the SHA-256 of line 2)" in errors
    assert "line 3: chunk 2 is out of order (expected chunk 1)" in errors
    assert "line 4: chunk 1 starts at target 205: targets [205, 605) are scored twice" in errors


def test_duplicated_chunk_line(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])
    lines.insert(3, lines[2])
    errors = verify_log(_write(tmp_path, lines)).errors
    assert "line 4: hash chain broken (prev does not match the SHA-256 of line 3)" in errors
    assert "line 4: chunk 1 appears more than once" in errors
    assert "line 4: chunk 1 starts at target 205: targets [205, 405) are scored twice" in errors


def test_truncated_log_has_no_summary(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])[:-2]
    result = verify_log(_write(tmp_path, lines))
    assert "log has no summary line at the end (truncated, or the run did not finish)" in result.errors
    assert "chunks cover targets [0, 605) but the header plans [0, 800)" in result.errors
    assert not result.complete


def test_edited_summary_bpb_is_caught_without_a_following_line(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])
    record = json.loads(lines[-1])
    record["val_bpb"] = record["val_bpb"] - 0.01
    lines[-1] = encode_line(record)
    errors = verify_log(_write(tmp_path, lines)).errors
    assert len(errors) == 1 and errors[0].startswith("line 6: summary val_bpb ")
    assert errors[0].endswith("does not match the chunk lines ({!r})".format(honest_logs["none"][1]))


def test_forged_rechained_log_is_caught_by_fingerprints_and_head(honest_logs: dict, tmp_path: Path) -> None:
    path, _ = honest_logs["sgd"]
    records = [json.loads(line) for line in _lines(path)]
    honest_head = line_hash(_lines(path)[-1])
    # Pretend chunk 2 was scored before the adaptation on chunk 1 had finished.
    records[3]["fp_before_score"] = records[2]["fp_after_score"]
    forged = _write(tmp_path, _rechain(records))
    errors = verify_log(forged).errors
    assert errors == [
        "line 4: chunk 2: model state changed while it was being scored",
        "line 4: chunk 2: model state changed between adaptation and scoring",
    ]
    assert verify_log(forged, expected_head=honest_head).errors[0].startswith("log head ")


def test_state_change_without_adapter_is_caught(honest_logs: dict, tmp_path: Path) -> None:
    records = [json.loads(line) for line in _lines(honest_logs["none"][0])]
    for key in ("fp_after_prev_adapt", "fp_before_score", "fp_after_score"):
        records[2][key] = "0123456789abcdef"
    errors = verify_log(_write(tmp_path, _rechain(records))).errors
    assert errors == [
        "line 3: chunk 1: model state changed although no adapter ran",
        "line 4: chunk 2: model state changed although no adapter ran",
    ]


def test_garbage_lines_and_missing_files(honest_logs: dict, tmp_path: Path) -> None:
    lines = _lines(honest_logs["none"][0])
    lines[1] = "{not json"
    errors = verify_log(_write(tmp_path, lines)).errors
    assert "line 2: not a valid JSON record" in errors
    assert verify_log(_write(tmp_path, [])).errors == ["log is empty"]
    with pytest.raises(DataFormatError, match="audit log not found"):
        verify_log(tmp_path / "absent.jsonl")
