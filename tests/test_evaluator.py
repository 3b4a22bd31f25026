"""golf-eval's evaluator: window coverage, the hand-computed tiny case, fingerprints, the
scored-token view, and runtime findings (unscored reads, state changed while scoring)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from harness.errors import UsageError
from harness.evaluate.adapters import make_adapter
from harness.evaluate.adapters.base import AdapterConfig
from harness.evaluate.adapters.none import NoAdapter
from harness.evaluate.adapters.sgd import cosine_lr, trainable_parameters
from harness.evaluate.evaluator import EvalConfig, EvalInputs, evaluate
from harness.evaluate.fingerprint import Fingerprinter, state_sha256
from harness.evaluate.scored import ChunkInfo, RuntimeViolation, ScoredTokens, UnscoredAccess, newly_scored
from harness.evaluate.scoring import ScoringError
from harness.evaluate.verify import verify_log
from harness.evaluate.windows import plan_evaluation, plan_windows

# ---------------------------------------------------------------- window plan


def _assert_plan_covers(total_tokens: int, seq_len: int, stride: int, chunk_tokens: int) -> None:
    plan = plan_evaluation(total_tokens, seq_len, stride, chunk_tokens)
    targets = total_tokens - 1
    counts = np.zeros(targets, dtype=np.int64)
    cursor = 0
    length = min(seq_len, targets)
    for position, chunk in enumerate(plan.chunks):
        assert chunk.index == position
        assert chunk.target_start == cursor
        windows = chunk.windows
        assert windows.length == length
        for start, offset in zip(windows.input_start.tolist(), windows.score_offset.tolist()):
            assert 0 <= start and start + length <= targets  # inputs and targets stay in the stream
            assert start + offset >= chunk.target_start
            # window's first scored target lies in this chunk's nominal block
            assert (start + offset) // chunk_tokens == (
                chunk.windows.input_start[0] + chunk.windows.score_offset[0]
            ) // chunk_tokens
            scored = length - offset
            assert 1 <= scored <= (length if start == 0 and offset == 0 else stride)
            counts[start + offset : start + length] += 1
        cursor = chunk.target_end
    assert cursor == targets
    assert counts.min() == 1 and counts.max() == 1


def test_every_target_scored_exactly_once_exhaustive() -> None:
    for total_tokens in range(2, 41):
        for seq_len in range(1, 9):
            for stride in range(1, seq_len + 1):
                for chunk_tokens in (1, 3, 7, 16):
                    _assert_plan_covers(total_tokens, seq_len, stride, chunk_tokens)


@settings(max_examples=150, deadline=None)
@given(
    total_tokens=st.integers(2, 5000),
    seq_len=st.integers(1, 300),
    stride_fraction=st.floats(0.0, 1.0),
    chunk_tokens=st.integers(1, 2000),
)
def test_every_target_scored_exactly_once_hypothesis(
    total_tokens: int, seq_len: int, stride_fraction: float, chunk_tokens: int
) -> None:
    stride = max(1, round(seq_len * stride_fraction))
    _assert_plan_covers(total_tokens, seq_len, stride, chunk_tokens)


def test_plan_with_stride_equal_seq_len_is_the_baseline_non_overlapping_split() -> None:
    windows = plan_windows(total_tokens=13, seq_len=4, stride=4)
    assert windows.input_start.tolist() == [0, 4, 8]
    assert windows.score_offset.tolist() == [0, 0, 0]


def test_sliding_plan_by_hand() -> None:
    # 11 targets, windows of 4 every 2: first scores [0,4), then [4,6), [6,8), [8,10), [10,11)
    windows = plan_windows(total_tokens=12, seq_len=4, stride=2)
    assert windows.input_start.tolist() == [0, 2, 4, 6, 7]
    assert windows.score_offset.tolist() == [0, 2, 2, 2, 3]
    # first scored targets 0, 4, 6, 8, 10 fall in chunks 0, 0, 1, 1, 2 of 5 targets each
    plan = plan_evaluation(12, 4, 2, chunk_tokens=5)
    assert [(c.target_start, c.target_end) for c in plan.chunks] == [(0, 6), (6, 10), (10, 11)]


def test_plan_rejects_impossible_settings() -> None:
    with pytest.raises(UsageError, match="stride 5 is larger than seq_len 4"):
        plan_windows(100, 4, 5)
    with pytest.raises(UsageError, match="nothing to score"):
        plan_windows(1, 4, 4)


# ---------------------------------------------------------------- toy models


class FixedDistribution(nn.Module):
    """Ignores its input: p = [1/2, 1/4, 1/8, 1/8] at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.log_p = nn.Parameter(torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125])))

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.log_p.expand(*input_ids.shape, 4) + 7.0  # an offset: only normalized scores count


class Bigram(nn.Module):
    def __init__(self, vocab: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=generator))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids]


class SelfUpdating(Bigram):
    """Illegal: every forward pass nudges the table toward what it just saw (a cache)."""

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = self.table[input_ids]
        with torch.no_grad():
            self.table.data[input_ids[0, 0]] += 0.01
        return logits


def _run(
    model: nn.Module,
    tokens: np.ndarray,
    target_bytes: np.ndarray,
    vocab: int,
    tmp_path: Path,
    use_adapter: object = None,
    **config: object,
) -> tuple:
    cfg = EvalConfig(**config)
    log = tmp_path / "chunks.jsonl"
    result = evaluate(model, use_adapter or NoAdapter(), EvalInputs(tokens, target_bytes, vocab), cfg, log)
    return result, verify_log(log)


# ---------------------------------------------------------------- hand-computed case


def test_hand_computed_tiny_case(tmp_path: Path) -> None:
    # Stream 0 1 2 3 0 1 3 2 0: targets 1 2 3 0 1 3 2 0 cost 2,3,3,1,2,3,3,1 bits = 18 bits.
    tokens = np.array([0, 1, 2, 3, 0, 1, 3, 2, 0], dtype=np.uint16)
    # Hand-made byte LUT: base bytes [0, 1, 2, 3]; token 1 has a leading space (+1) unless it
    # follows the boundary token 0. Targets' bytes: 1 after 0 → 1; 2 → 2; 3 → 3; 0 → 0;
    # 1 after 0 → 1; 3 → 3; 2 → 2; 0 → 0; total 12 bytes.
    base = np.array([0, 1, 2, 3])
    lead = np.array([False, True, False, False])
    boundary = np.array([True, False, False, False])
    prev, target = tokens[:-1].astype(np.int64), tokens[1:].astype(np.int64)
    target_bytes = base[target] + (lead[target] & ~boundary[prev])
    assert target_bytes.tolist() == [1, 2, 3, 0, 1, 3, 2, 0]
    result, verified = _run(FixedDistribution(), tokens, target_bytes, 4, tmp_path, seq_len=3, stride=2, chunk_tokens=4)
    assert result.tokens == 8 and result.bytes == 12
    assert result.val_bpb == pytest.approx(18 / 12, rel=1e-6)
    assert result.val_loss == pytest.approx(18 * math.log(2) / 8, rel=1e-6)
    assert result.complete and result.findings == []
    assert verified.ok and verified.complete and verified.val_bpb == result.val_bpb
    assert result.chunks_done == 2  # targets [0,3)+[3,5) belong to chunk 0, the rest to chunk 1


def test_bigram_bpb_does_not_depend_on_stride_or_chunking(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 8, size=301).astype(np.uint16)
    target_bytes = rng.integers(1, 4, size=300).astype(np.int64)
    model = Bigram(8)
    values = []
    for index, (seq_len, stride, chunk) in enumerate([(50, 50, 1000), (50, 7, 64), (13, 1, 40)]):
        folder = tmp_path / str(index)
        result, verified = _run(
            model, tokens, target_bytes, 8, folder, seq_len=seq_len, stride=stride, chunk_tokens=chunk, batch_windows=3
        )
        assert verified.ok, verified.errors
        values.append(result.val_bpb)
    assert values[1] == pytest.approx(values[0], rel=1e-9)
    assert values[2] == pytest.approx(values[0], rel=1e-9)


def test_wrong_vocabulary_width_is_rejected(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 2, 1, 0], dtype=np.uint16)
    with pytest.raises(ScoringError, match=r"logits of shape \(1, 4, 4\); expected \[1, 4, 5\]"):
        _run(FixedDistribution(), tokens, np.ones(4, dtype=np.int64), 5, tmp_path, seq_len=4)


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_sees_single_bit_flips_and_swaps() -> None:
    model = Bigram(6)
    fingerprint = Fingerprinter()
    base = fingerprint(model)
    assert fingerprint(model) == base and len(base) == 16
    bits = model.table.data.view(torch.int32)
    bits[2, 3] ^= 1  # lowest mantissa bit
    flipped = fingerprint(model)
    assert flipped != base
    bits[2, 3] ^= 1
    assert fingerprint(model) == base
    row = model.table.data[0].clone()
    model.table.data[0] = model.table.data[1]
    model.table.data[1] = row
    assert fingerprint(model) != base


def test_fingerprint_covers_buffers_and_low_precision_dtypes() -> None:
    model = Bigram(4).to(torch.bfloat16)
    model.register_buffer("mask", torch.tensor([True, False, True]))
    fingerprint = Fingerprinter()
    base, sha = fingerprint(model), state_sha256(model)
    model.mask[1] = True
    assert fingerprint(model) != base and state_sha256(model) != sha
    model.mask[1] = False
    model.calls += 1  # int64 buffer
    assert fingerprint(model) != base
    model.calls -= 1
    assert fingerprint(model) == base and state_sha256(model) == sha


# ---------------------------------------------------------------- scored view and findings


def test_scored_view_allows_only_the_scored_prefix() -> None:
    tokens = np.arange(20, dtype=np.uint16)
    view = ScoredTokens()
    view._grow(newly_scored(tokens, view.frontier, 9))  # targets [0, 9) scored → tokens [0, 10) readable
    assert view.frontier == 10
    assert view[2:5].tolist() == [2, 3, 4] and view[:].shape == (10,) and int(view[9]) == 9
    with pytest.raises(UnscoredAccess, match=r"asked for \[5, 11\) but only \[0, 10\) are scored"):
        view.read(5, 11)
    with pytest.raises(UnscoredAccess):
        view[10]
    assert len(view.violations) == 2


class PeekingAdapter:
    """Illegal: trains on the next chunk before it is scored (reads past the frontier)."""

    name = "peek"

    def __init__(self, swallow: bool) -> None:
        self.swallow = swallow
        self.calls = 0

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None:
        self.calls += 1
        try:
            scored.read(chunk.token_start, chunk.token_end + 5)
        except UnscoredAccess:
            if not self.swallow:
                raise


@pytest.mark.parametrize("swallow", [False, True])
def test_adapter_reading_unscored_tokens_is_stopped_and_reported(tmp_path: Path, swallow: bool) -> None:
    tokens = np.random.default_rng(2).integers(0, 8, size=401).astype(np.uint16)
    adapter = PeekingAdapter(swallow)
    result, verified = _run(
        Bigram(8), tokens, np.ones(400, dtype=np.int64), 8, tmp_path, use_adapter=adapter, seq_len=20, chunk_tokens=100
    )
    assert adapter.calls == 1
    assert result.chunks_done == 1 and not result.complete
    assert [(f.rule, f.severity.value) for f in result.findings] == [("PG101", "error")]
    assert result.findings[0].message == (
        "adapter tried to read unscored tokens: asked for [0, 106) but only [0, 101) are scored"
    )
    assert result.stopped.startswith("stopped after chunk 0: adapter tried to read unscored tokens")
    # the log is intact and honest: it verifies, but it is not a complete evaluation
    assert verified.ok and not verified.complete
    assert verified.runtime_findings[0]["rule"] == "PG101"


def test_model_changing_itself_while_scoring_is_reported(tmp_path: Path) -> None:
    tokens = np.random.default_rng(3).integers(0, 8, size=201).astype(np.uint16)
    result, verified = _run(
        SelfUpdating(8), tokens, np.ones(200, dtype=np.int64), 8, tmp_path, seq_len=20, chunk_tokens=100
    )
    messages = [f.message for f in result.findings]
    assert messages[0].startswith("model state changed while chunk 0 was being scored")
    assert {f.rule for f in result.findings} == {"PG101"}
    assert not verified.ok
    assert "line 2: chunk 0: model state changed while it was being scored" in verified.errors


# ---------------------------------------------------------------- SGD adapter


def test_sgd_recipe_details() -> None:
    assert cosine_lr(0.002, 0, 5) == 0.002
    assert cosine_lr(0.002, 2, 5) == pytest.approx(0.001)
    assert cosine_lr(0.002, 4, 5) == pytest.approx(0.0, abs=1e-18)

    class Blocks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.head = nn.Linear(2, 2)

    chosen = trainable_parameters(Blocks(), freeze_blocks=2)
    assert len(chosen) == 4  # blocks.2 weight+bias, head weight+bias


def test_sgd_adapter_trains_only_on_scored_tokens_and_lowers_bpb(tmp_path: Path) -> None:
    # A stream with a strong bigram pattern the random model does not know yet.
    rng = np.random.default_rng(4)
    pattern = rng.permutation(8)
    tokens = np.empty(1201, dtype=np.uint16)
    tokens[0] = 0
    for i in range(1, tokens.size):
        tokens[i] = pattern[tokens[i - 1]] if rng.random() < 0.9 else rng.integers(0, 8)
    target_bytes = np.ones(1200, dtype=np.int64)
    bpb = {}
    for ttt in ("none", "sgd"):
        model = Bigram(8, seed=5)
        config = AdapterConfig(seq_len=40, lr=0.5)
        folder = tmp_path / ttt
        result, verified = _run(
            model,
            tokens,
            target_bytes,
            8,
            folder,
            use_adapter=make_adapter(ttt, model, config),
            seq_len=40,
            chunk_tokens=200,
            ttt=ttt,
            adapter=config,
        )
        assert verified.ok and verified.complete, verified.errors
        assert result.findings == []
        bpb[ttt] = result.val_bpb
    assert bpb["sgd"] < bpb["none"] - 0.1


def test_unknown_adapter_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown TTT adapter 'magic'"):
        make_adapter("magic", Bigram(2), AdapterConfig())


class NetworkingAdapter:
    """Stands in for an adapter whose network access a guard refused (rule PG301)."""

    name = "net"

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None:
        raise RuntimeViolation("network access refused: connect to 10.0.0.1:443", rule="PG301")


def test_guard_refusal_during_adaptation_keeps_its_rule(tmp_path: Path) -> None:
    tokens = np.random.default_rng(6).integers(0, 8, size=201).astype(np.uint16)
    result, verified = _run(
        Bigram(8),
        tokens,
        np.ones(200, dtype=np.int64),
        8,
        tmp_path,
        use_adapter=NetworkingAdapter(),
        seq_len=20,
        chunk_tokens=100,
    )
    assert [(f.rule, f.file, f.message) for f in result.findings] == [
        ("PG301", "<adapter>", "network access refused: connect to 10.0.0.1:443")
    ]
    assert result.stopped == "stopped after chunk 0: network access refused: connect to 10.0.0.1:443"
    assert verified.ok and not verified.complete
