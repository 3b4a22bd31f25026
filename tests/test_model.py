"""The reference GPT: exact parameter names/shapes, init, RoPE convention, causality, loss."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from reference_model.model import GPT, GPTConfig, Rotary, apply_rotary


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny tensors gain nothing from more, and on a shared CPU
    two spinning OpenMP threads make every op wait for a second core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY = GPTConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2)


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    v, d, m = config.vocab_size, config.model_dim, config.mlp_mult
    kv = config.num_kv_heads * (d // config.num_heads)
    shapes: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (v, d),
        "skip_weights": (min(config.num_layers // 2, config.num_layers - config.num_layers // 2), d),
    }
    for i in range(config.num_layers):
        shapes |= {
            f"blocks.{i}.attn.c_q.weight": (d, d),
            f"blocks.{i}.attn.c_k.weight": (kv, d),
            f"blocks.{i}.attn.c_v.weight": (kv, d),
            f"blocks.{i}.attn.proj.weight": (d, d),
            f"blocks.{i}.attn.q_gain": (config.num_heads,),
            f"blocks.{i}.mlp.fc.weight": (m * d, d),
            f"blocks.{i}.mlp.proj.weight": (d, m * d),
            f"blocks.{i}.attn_scale": (d,),
            f"blocks.{i}.mlp_scale": (d,),
            f"blocks.{i}.resid_mix": (2, d),
        }
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (v, d)
    return shapes


def test_default_config_state_dict_names_and_shapes() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig())
    got = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert got == expected_shapes(GPTConfig())
    assert got["blocks.8.attn.c_k.weight"] == (256, 512)
    assert got["skip_weights"] == (4, 512)
    assert len(got) == 2 + 9 * 10
    assert sum(t.numel() for t in model.state_dict().values()) == 17_059_912


def test_untied_config_adds_lm_head() -> None:
    config = GPTConfig(num_layers=4, tie_embeddings=False)
    with torch.device("meta"):
        model = GPT(config)
    got = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert got == expected_shapes(config)
    assert got["lm_head.weight"] == (1024, 512)
    assert got["skip_weights"] == (2, 512)


def test_init_values() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2))
    sd = model.state_dict()
    for i in range(2):
        assert torch.count_nonzero(sd[f"blocks.{i}.attn.proj.weight"]) == 0
        assert torch.count_nonzero(sd[f"blocks.{i}.mlp.proj.weight"]) == 0
        assert torch.equal(sd[f"blocks.{i}.attn_scale"], torch.ones(128))
        assert torch.equal(sd[f"blocks.{i}.mlp_scale"], torch.ones(128))
        assert torch.equal(sd[f"blocks.{i}.resid_mix"], torch.stack([torch.ones(128), torch.zeros(128)]))
        assert torch.equal(sd[f"blocks.{i}.attn.q_gain"], torch.full((4,), 1.5))
        assert sd[f"blocks.{i}.attn.c_q.weight"].dtype == torch.float32
    assert torch.equal(sd["skip_weights"], torch.ones(1, 128))
    assert abs(sd["tok_emb.weight"].std().item() - 0.005) < 0.0002
    assert abs(sd["tok_emb.weight"].mean().item()) < 0.0002


def test_untied_head_is_zero_initialised() -> None:
    model = GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, tie_embeddings=False))
    assert torch.count_nonzero(model.lm_head.weight) == 0
    logits = model.forward_logits(torch.tensor([[1, 2, 3]]))
    assert torch.equal(logits, torch.zeros(1, 3, 64))


def test_rope_sign_convention_by_hand() -> None:
    rotary = Rotary(head_dim=4, base=10000.0)
    cos, sin = rotary(3, torch.device("cpu"), torch.float32)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    out = apply_rotary(x, cos, sin)[0, 0]
    # inv_freq = [1, 10000^(-1/2)] = [1, 0.01]; position p rotates pair (x1_j, x2_j) by p·inv_freq_j.
    for p in range(3):
        a, b = p * 1.0, p * 0.01
        expected = [
            1 * math.cos(a) + 3 * math.sin(a),
            2 * math.cos(b) + 4 * math.sin(b),
            -1 * math.sin(a) + 3 * math.cos(a),
            -2 * math.sin(b) + 4 * math.cos(b),
        ]
        assert out[p].tolist() == pytest.approx(expected, abs=1e-6)
    # cos 1 = 0.5403023, sin 1 = 0.8414710: [0.5403 + 3·0.8415, …, −0.8415 + 3·0.5403, …]
    assert out[1].tolist() == pytest.approx([3.0647152, 2.0398994, 0.7794361, 3.9798002], abs=1e-6)
    # the complex-number convention (rotation by +θ) would give 1·cos 1 − 3·sin 1 first
    assert out[1, 0].item() != pytest.approx(math.cos(1) - 3 * math.sin(1), abs=1e-3)


def _randomised_tiny_model(seed: int = 0) -> GPT:
    """Zero-initialised projections make attention invisible; give every weight a value."""
    torch.manual_seed(seed)
    model = GPT(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "resid_mix" not in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def test_changing_a_future_token_leaves_earlier_logits_unchanged() -> None:
    model = _randomised_tiny_model()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 5) % 64
    with torch.inference_mode():
        before = model.forward_logits(ids)
        after = model.forward_logits(changed)
    assert torch.equal(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_logits_are_softcapped_float32_and_loss_matches_them() -> None:
    model = _randomised_tiny_model(seed=3)
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000.0)  # drive raw logits far past the cap
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        logits = model.forward_logits(ids)
        loss = model(ids, targets)
    assert logits.shape == (2, 9, 64)
    assert logits.dtype == torch.float32
    assert logits.abs().max().item() <= 30.0
    assert logits.abs().max().item() > 29.0
    expected = F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fresh_model_predicts_nearly_uniform() -> None:
    """Zero-init projections + tiny tied embedding ⇒ initial loss ≈ ln V, as in the baseline."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    ids = torch.randint(0, 1024, (2, 16))
    with torch.inference_mode():
        loss = model(ids, torch.roll(ids, -1, dims=1)).item()
    assert loss == pytest.approx(math.log(1024), abs=0.01)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_dim": 30, "num_heads": 4}, "not divisible by num_heads"),
        ({"num_heads": 4, "num_kv_heads": 3}, "not a multiple of num_kv_heads"),
        ({"model_dim": 24, "num_heads": 8, "num_kv_heads": 4}, "head dimension must be even"),
    ],
)
def test_impossible_configs_are_refused(overrides: dict[str, int], message: str) -> None:
    base = {"vocab_size": 64, "num_layers": 2, "model_dim": 32, "num_heads": 4, "num_kv_heads": 2}
    with pytest.raises(ValueError, match=message):
        GPTConfig(**(base | overrides))
