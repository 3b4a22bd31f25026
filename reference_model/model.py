"""The reference GPT, architecturally identical to the Parameter Golf baseline.

Why identical: artifacts must be interchangeable with the challenge's baseline script, so
parameter names, shapes, the RoPE sign convention, the U-Net style skip connections and the
logit soft-cap all follow it exactly. Anything that changes a tensor name or the maths of a
forward pass breaks loading a baseline artifact in golf-eval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Small per-channel tensors that steer the residual stream. They stay in fp32 in training
# and in the int8 artifact, and the optimizer treats them as scalars (Adam), not matrices.
CONTROL_TENSOR_NAME_PATTERNS: tuple[str, ...] = (
    "attn_scale",
    "attn_scales",
    "mlp_scale",
    "mlp_scales",
    "resid_mix",
    "resid_mixes",
    "q_gain",
    "skip_weight",
    "skip_weights",
)


@dataclass
class GPTConfig:
    """Shape and constant choices of the model; defaults are the challenge baseline's."""

    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005

    def __post_init__(self) -> None:
        if self.model_dim % self.num_heads != 0:
            raise ValueError(f"model_dim {self.model_dim} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if (self.model_dim // self.num_heads) % 2 != 0:
            raise ValueError("head dimension must be even for half-split RoPE")
        if self.logit_softcap <= 0:
            raise ValueError(f"logit_softcap must be positive, got {self.logit_softcap}")


def rms_norm(x: Tensor) -> Tensor:
    """Weightless RMSNorm over the last dimension (the baseline has no norm gains)."""
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """A bias-free linear whose fp32 weight is cast to the activation dtype at use.

    Why: weights stay fp32 for the optimizer while matmuls run in bf16 under autocast.
    """

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class Rotary(nn.Module):
    """Cos/sin tables for RoPE over the full head dimension, cached per sequence length."""

    inv_freq: Tensor  # a registered buffer

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # Tables built under inference_mode cannot enter autograd, so the mode is part of the key.
        self._cached_key: tuple[int, torch.device, bool] | None = None
        self._cos: Tensor | None = None
        self._sin: Tensor | None = None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (seq_len, device, torch.is_inference_mode_enabled())
        if self._cached_key != key or self._cos is None or self._sin is None:
            positions = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(positions, self.inv_freq.to(device))
            self._cos = freqs.cos()[None, None, :, :]
            self._sin = freqs.sin()[None, None, :, :]
            self._cached_key = key
        return self._cos.to(dtype), self._sin.to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Half-split rotation: [x1, x2] -> [x1·cos + x2·sin, −x1·sin + x2·cos].

    This sign convention (a rotation by −θ relative to the usual complex form) is the
    baseline's; the opposite sign gives a different model for the same weights.
    """
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """GQA attention with per-head q/k RMSNorm, RoPE and a learned per-head query gain."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        dim = config.model_dim
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = dim // config.num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((config.num_heads,), config.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, config.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq_len, dim = x.shape
        q = self.c_q(x).reshape(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(batch, seq_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(batch, seq_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = rms_norm(q)
        k = rms_norm(k)
        cos, sin = self.rotary(seq_len, x.device, q.dtype)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads
        )
        y = y.transpose(1, 2).contiguous().reshape(batch, seq_len, dim)
        return self.proj(y)


class MLP(nn.Module):
    """relu² MLP: proj(relu(fc(x))²)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.mlp_mult * config.model_dim
        self.fc = CastedLinear(config.model_dim, hidden, bias=False)
        self.proj = CastedLinear(hidden, config.model_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    """One transformer block that also re-mixes in the normalized embeddings x0."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        dim = config.model_dim
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(dtype=x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + self.attn_scale.to(dtype=x.dtype)[None, None, :] * self.attn(rms_norm(x))
        x = x + self.mlp_scale.to(dtype=x.dtype)[None, None, :] * self.mlp(rms_norm(x))
        return x


class GPT(nn.Module):
    """Embedding → encoder half (pushes skips) → decoder half (pops skips) → tied head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.model_dim)
        self.num_encoder_layers = config.num_layers // 2
        self.num_decoder_layers = config.num_layers - self.num_encoder_layers
        num_skips = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, config.model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.num_layers)])
        self.lm_head: CastedLinear | None = None
        if not config.tie_embeddings:
            self.lm_head = CastedLinear(config.model_dim, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Zero output projections so every block starts as the identity on the residual."""
        if self.config.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.config.tied_embed_init_std)
        blocks = [block for block in self.blocks if isinstance(block, Block)]
        zero_init = [block.attn.proj for block in blocks] + [block.mlp.proj for block in blocks]
        if self.lm_head is not None:
            zero_init.append(self.lm_head)
        for linear in zero_init:
            nn.init.zeros_(linear.weight)

    def _hidden(self, input_ids: Tensor) -> Tensor:
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(dtype=x.dtype)[None, None, :] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        return rms_norm(x)

    def _softcapped_logits(self, hidden: Tensor) -> Tensor:
        if self.lm_head is None:
            raw = F.linear(hidden, self.tok_emb.weight.to(hidden.dtype))
        else:
            raw = self.lm_head(hidden)
        cap = self.config.logit_softcap
        return cap * torch.tanh(raw / cap)

    def forward_logits(self, input_ids: Tensor) -> Tensor:
        """Full soft-capped distributions [B, T, V] in float32, for evaluators."""
        return self._softcapped_logits(self._hidden(input_ids)).float()

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Mean cross-entropy (float32) of the targets under the soft-capped logits."""
        logits = self._softcapped_logits(self._hidden(input_ids))
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")
