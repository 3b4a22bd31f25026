"""The ``lora`` adapter: registered by name, zero delta until trained, reset at every BOS, reads
only scored tokens of the open document, keeps the model causal, and lowers BPB on documents
that repeat themselves — deterministically."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import UsageError
from harness.evaluate.adapters import available_adapters, make_adapter
from harness.evaluate.adapters.base import AdapterConfig
from harness.evaluate.adapters.lora import LoraAdapter
from harness.evaluate.evaluator import EvalConfig, EvalInputs, evaluate
from harness.evaluate.fingerprint import Fingerprinter
from harness.evaluate.probes import run_probes
from harness.evaluate.scored import ChunkInfo, ScoredTokens, newly_scored
from reference_model.model import GPT, GPTConfig

VOCAB = 64
BOS = 1
SEQ_LEN = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded; on a loaded machine OpenMP spinning costs seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.08)
    return model.eval()


def _documents(count: int = 3, repeats: int = 24, seed: int = 1) -> np.ndarray:
    """BOS-led documents, each a random 6-gram repeated: learnable within the document only."""
    rng = np.random.default_rng(seed)
    docs = [np.concatenate([[BOS], np.tile(rng.integers(2, VOCAB, size=6), repeats)]) for _ in range(count)]
    return np.concatenate(docs).astype(np.int64)


class RecordingScored(ScoredTokens):
    """The evaluator's scored view, remembering every read with the frontier at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int, int, int]] = []

    def read(self, start: int, stop: int) -> torch.Tensor:
        self.reads.append((start, stop, self.frontier))
        return super().read(start, stop)


def _chunk(index: int, target_start: int, target_end: int) -> ChunkInfo:
    return ChunkInfo(index=index, num_chunks=10, target_start=target_start, target_end=target_end, seq_len=SEQ_LEN)


def _lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if ".lora." in k}


def test_registered_under_lora_and_fresh_adapter_changes_nothing() -> None:
    assert "lora" in available_adapters()
    model = _tiny_gpt()
    tokens = torch.from_numpy(_documents()[None, :SEQ_LEN])
    with torch.inference_mode():
        before = model.forward_logits(tokens)
    adapter = make_adapter("lora", model, AdapterConfig(seq_len=SEQ_LEN))
    assert isinstance(adapter, LoraAdapter) and adapter.name == "lora"
    # q and v projections of both blocks carry a rank-8 delta that is part of the fingerprinted state
    assert sorted(_lora_state(model)) == sorted(
        f"blocks.{b}.attn.c_{p}.lora.lora_{m}" for b in (0, 1) for p in ("q", "v") for m in ("a", "b")
    )
    assert tuple(model.blocks[0].attn.c_q.lora.lora_a.shape) == (8, 32)
    with torch.inference_mode():
        assert torch.equal(model.forward_logits(tokens), before)


def test_all_linears_target_and_models_without_projections() -> None:
    model = _tiny_gpt()
    LoraAdapter(model, AdapterConfig())
    counted = len([k for k in _lora_state(model) if k.endswith("lora_a")])
    assert counted == 4
    everything = _tiny_gpt()

    LoraAdapter(everything, AdapterConfig(lora_targets="all"))
    assert len([k for k in _lora_state(everything) if k.endswith("lora_a")]) == 2 * 6  # q k v proj fc proj
    with pytest.raises(UsageError, match="token embedding"):
        LoraAdapter(nn.Sequential(nn.Linear(4, 4)), AdapterConfig())


def test_rank_lr_and_targets_come_from_the_adapter_config() -> None:
    model = _tiny_gpt()
    adapter = LoraAdapter(model, AdapterConfig(lora_rank=3, lora_lr=0.05, lora_targets="all"))
    assert (adapter.rank, adapter.lr) == (3, 0.05)
    assert tuple(model.blocks[1].mlp.fc.lora.lora_a.shape) == (3, 32)
    assert [group["lr"] for group in adapter.optimizer.param_groups] == [0.05]
    default = LoraAdapter(_tiny_gpt(), AdapterConfig())
    assert (default.rank, default.lr, len(default.deltas)) == (8, 0.01, 4)  # q and v of 2 blocks
    with pytest.raises(UsageError, match="lora_rank must be ≥ 1 and lora_lr > 0 \\(got 0, 0.01\\)"):
        LoraAdapter(_tiny_gpt(), AdapterConfig(lora_rank=0))
    with pytest.raises(UsageError, match="lora_targets must be 'qv' or 'all' \\(got 'mlp'\\)"):
        LoraAdapter(_tiny_gpt(), AdapterConfig(lora_targets="mlp"))


def test_config_json_shows_the_settings_of_the_adapter_in_use() -> None:
    config = AdapterConfig(lr=0.003, lora_rank=4, lora_lr=0.02, seq_len=SEQ_LEN)
    assert config.to_json("lora") == {
        "lora_rank": 4,
        "lora_lr": 0.02,
        "lora_targets": "qv",
        "epochs": 3,
        "grad_clip": 1.0,
        "seq_len": SEQ_LEN,
    }
    assert config.to_json("sgd") == {
        "lr": 0.003,
        "momentum": 0.9,
        "epochs": 3,
        "grad_clip": 1.0,
        "freeze_blocks": 0,
        "batch_seqs": 32,
        "seq_len": SEQ_LEN,
    }
    assert set(config.to_json("own")) == set(config.to_json("sgd")) | {"lora_rank", "lora_lr", "lora_targets"}
    assert EvalConfig(ttt="lora", adapter=config).to_json()["adapter"] == config.to_json("lora")
    assert EvalConfig(ttt="none", adapter=config).to_json()["adapter"] is None


def test_reads_stay_below_the_frontier_and_inside_the_open_document() -> None:
    tokens = _documents()  # BOS at 0, 145, 290
    model = _tiny_gpt()
    adapter = LoraAdapter(model, AdapterConfig(seq_len=SEQ_LEN, epochs=1))
    scored = RecordingScored()
    for index, (start, end) in enumerate([(0, 100), (100, 160), (160, 300)]):
        scored._grow(newly_scored(tokens, scored.frontier, end))
        adapter.adapt(model, scored, _chunk(index, start, end))
    assert all(stop <= frontier for _, stop, frontier in scored.reads)
    assert scored.violations == []
    assert adapter.resets == 3 and adapter.doc_start == 290
    training_reads = [(a, b) for a, b, _ in scored.reads if (a, b) not in ((0, 101), (101, 161), (161, 301))]
    # document 1 (BOS at 0): targets 1..99 in pieces of <= 32 with <= 32 tokens of context, and 100..144
    # never (it closed inside chunk 1); document 2 (BOS at 145): targets 146..159; document 3 (BOS at
    # 290): targets 291..299. Every window starts after its document's BOS and ends at the frontier.
    assert training_reads == [(1, 34), (33, 66), (65, 98), (68, 101), (146, 161), (291, 301)]


def test_reset_at_bos_restores_the_initial_delta_and_training_depends_only_on_the_open_document() -> None:
    tokens = _documents()
    model = _tiny_gpt()
    adapter = LoraAdapter(model, AdapterConfig(seq_len=SEQ_LEN))
    initial = _lora_state(model)
    scored = ScoredTokens()
    scored._grow(newly_scored(tokens, scored.frontier, 120))
    adapter.adapt(model, scored, _chunk(0, 0, 120))
    trained = _lora_state(model)
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    # The next chunk ends right after document 2's BOS (position 145): reset, nothing to train yet.
    scored._grow(newly_scored(tokens, scored.frontier, 145))
    adapter.adapt(model, scored, _chunk(1, 120, 145))
    assert adapter.resets == 2 and adapter.active is False
    assert all(torch.equal(v, initial[k]) for k, v in _lora_state(model).items())
    # Training on document 2 gives exactly what a fresh adapter trained on document 2 alone gives.
    scored._grow(newly_scored(tokens, scored.frontier, 200))
    adapter.adapt(model, scored, _chunk(2, 145, 200))
    fresh_model = _tiny_gpt()
    fresh = LoraAdapter(fresh_model, AdapterConfig(seq_len=SEQ_LEN))
    alone = ScoredTokens()
    alone._grow(newly_scored(tokens, alone.frontier, 145))
    fresh.adapt(fresh_model, alone, _chunk(0, 0, 145))  # finds the BOS at 145: reset, no training
    alone._grow(newly_scored(tokens, alone.frontier, 200))
    fresh.adapt(fresh_model, alone, _chunk(1, 145, 200))
    assert all(torch.equal(v, _lora_state(fresh_model)[k]) for k, v in _lora_state(model).items())


def test_delta_applies_only_before_the_first_bos_of_a_window_and_stays_causal() -> None:
    tokens = _documents()
    model = _tiny_gpt()
    base = _tiny_gpt()
    adapter = LoraAdapter(model, AdapterConfig(seq_len=SEQ_LEN))
    scored = ScoredTokens()
    scored._grow(newly_scored(tokens, scored.frontier, 100))
    adapter.adapt(model, scored, _chunk(0, 0, 100))
    inside = torch.from_numpy(tokens[None, 100:132])  # continues document 1: adapted everywhere
    starts_new = torch.from_numpy(tokens[None, 145:177])  # opens with document 2's BOS: never adapted
    with torch.inference_mode():
        changed = (model.forward_logits(inside) - base.forward_logits(inside)).abs().amax(dim=(0, 2))
        same = model.forward_logits(starts_new) - base.forward_logits(starts_new)
    assert bool((changed > 0).all())
    assert same.abs().max().item() == 0.0
    fingerprint = Fingerprinter()(model)
    report = run_probes(model, tokens[100:], seq_len=SEQ_LEN)
    assert report.findings == [] and report.results[0].status == "pass"
    assert Fingerprinter()(model) == fingerprint


def _bpb(ttt: str, tokens: np.ndarray) -> tuple[float, list, bool]:
    model = _tiny_gpt()
    config = EvalConfig(seq_len=SEQ_LEN, chunk_tokens=64, ttt=ttt, adapter=AdapterConfig(seq_len=SEQ_LEN))
    inputs = EvalInputs(tokens=tokens, target_bytes=np.ones(tokens.size - 1, dtype=np.int64), vocab_size=VOCAB)
    result = evaluate(model, make_adapter(ttt, model, config.adapter), inputs, config, None)
    return result.val_bpb, result.findings, result.complete


def test_lora_lowers_bpb_on_self_repeating_documents_deterministically() -> None:
    tokens = _documents(count=2, repeats=20)
    none_bpb, none_findings, _ = _bpb("none", tokens)
    lora_bpb, lora_findings, complete = _bpb("lora", tokens)
    again, _, _ = _bpb("lora", tokens)
    assert complete and none_findings == [] and lora_findings == []
    assert lora_bpb < none_bpb - 0.5  # the open document's repeats are learned between chunks
    assert again == lora_bpb  # bit-identical on a rerun
