"""The baseline's int8 artifact format: export, compression, loading and config inference.

Why this exact layout: the challenge's baseline writes ``int8_clean_per_row_v1`` dicts, and
golf-eval must load those files with no side information. So the quantizer follows the
baseline rule for rule (size threshold, clip percentile, scale dtypes, control tensors kept
in fp32), and ``infer_config`` recovers the architecture from tensor shapes alone.

Nothing here looks at data: quantization uses only the weights (no calibration), so it can
never touch validation tokens.
"""

from __future__ import annotations

import io
import pickle
import re
import zlib
from pathlib import Path

import torch
import zstandard
from torch import Tensor

from harness.errors import DataFormatError, UsageError
from reference_model.model import CONTROL_TENSOR_NAME_PATTERNS, GPT, GPTConfig

QUANT_FORMAT = "int8_clean_per_row_v1"
KEEP_FLOAT_MAX_NUMEL = 65_536
KEEP_FLOAT_STORE_DTYPE = torch.float16
PER_ROW_SCALE_DTYPE = torch.float16
CLIP_PERCENTILE = 99.99984
CLIP_QUANTILE = CLIP_PERCENTILE / 100.0
ZLIB_LEVEL = 9
ZSTD_LEVEL = 22
# A 16 MB artifact inflates to a few tens of MB; anything far larger is hostile or foreign.
MAX_DECOMPRESSED_BYTES = 1 << 30
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

QuantStats = dict[str, int]


def tensor_nbytes(t: Tensor) -> int:
    return int(t.numel()) * int(t.element_size())


def _keep_float_tensor(name: str, t: Tensor, passthrough_orig_dtypes: dict[str, str]) -> Tensor:
    """Small float tensors stay float: control tensors in fp32, the rest squeezed to fp16."""
    if any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS):
        return t.float().contiguous()
    if t.dtype in (torch.float32, torch.bfloat16):
        passthrough_orig_dtypes[name] = str(t.dtype).removeprefix("torch.")
        return t.to(dtype=KEEP_FLOAT_STORE_DTYPE).contiguous()
    return t


def quantize_float_tensor(t: Tensor) -> tuple[Tensor, Tensor]:
    """int8 with symmetric clipping at the 99.99984th percentile of |w|.

    2-D tensors get one fp16 scale per row (rows are output channels, whose ranges differ a
    lot); anything else gets one fp32 scalar scale.
    """
    t32 = t.float()
    if t32.ndim == 2:
        if t32.numel():
            clip_abs = torch.quantile(t32.abs(), CLIP_QUANTILE, dim=1)
        else:
            clip_abs = torch.empty((t32.shape[0],), dtype=torch.float32)
        clipped = torch.maximum(torch.minimum(t32, clip_abs[:, None]), -clip_abs[:, None])
        scale = (clip_abs / 127.0).clamp_min(1.0 / 127.0)
        q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8).contiguous()
        return q, scale.to(dtype=PER_ROW_SCALE_DTYPE).contiguous()
    clip = float(torch.quantile(t32.abs().flatten(), CLIP_QUANTILE).item()) if t32.numel() else 0.0
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip, clip) / scale), -127, 127).to(torch.int8).contiguous()
    return q, scale


def quantize_state_dict_int8(state_dict: dict[str, Tensor]) -> tuple[dict[str, object], QuantStats]:
    """Build the ``int8_clean_per_row_v1`` dict (and byte statistics for the log)."""
    quantized: dict[str, Tensor] = {}
    scales: dict[str, Tensor] = {}
    dtypes: dict[str, str] = {}
    passthrough: dict[str, Tensor] = {}
    passthrough_orig_dtypes: dict[str, str] = {}
    qmeta: dict[str, dict[str, object]] = {}
    stats: QuantStats = dict.fromkeys(
        (
            "param_count",
            "num_tensors",
            "num_float_tensors",
            "num_nonfloat_tensors",
            "baseline_tensor_bytes",
            "int8_payload_bytes",
        ),
        0,
    )
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        stats["param_count"] += int(t.numel())
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += tensor_nbytes(t)
        if not t.is_floating_point():
            stats["num_nonfloat_tensors"] += 1
            passthrough[name] = t
            stats["int8_payload_bytes"] += tensor_nbytes(t)
            continue
        if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
            kept = _keep_float_tensor(name, t, passthrough_orig_dtypes)
            passthrough[name] = kept
            stats["int8_payload_bytes"] += tensor_nbytes(kept)
            continue
        stats["num_float_tensors"] += 1
        q, scale = quantize_float_tensor(t)
        if scale.ndim > 0:
            qmeta[name] = {"scheme": "per_row", "axis": 0}
        quantized[name] = q
        scales[name] = scale
        dtypes[name] = str(t.dtype).removeprefix("torch.")
        stats["int8_payload_bytes"] += tensor_nbytes(q) + tensor_nbytes(scale)
    obj: dict[str, object] = {
        "__quant_format__": QUANT_FORMAT,
        "quantized": quantized,
        "scales": scales,
        "dtypes": dtypes,
        "passthrough": passthrough,
    }
    if qmeta:
        obj["qmeta"] = qmeta
    if passthrough_orig_dtypes:
        obj["passthrough_orig_dtypes"] = passthrough_orig_dtypes
    return obj, stats


def _torch_dtype(name: object, floating: bool = False) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype) or (floating and not dtype.is_floating_point):
        raise DataFormatError(f"artifact names an unknown or non-float dtype {name!r}")
    return dtype


def _tensor_dict(obj: dict[str, object], key: str) -> dict[str, Tensor]:
    entry = obj.get(key, {})
    if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in entry.items()):
        raise DataFormatError(f"artifact entry {key!r} must map names to tensors")
    return entry


def _str_dict(obj: dict[str, object], key: str) -> dict[str, str]:
    entry = obj.get(key, {})
    if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        raise DataFormatError(f"artifact entry {key!r} must map names to dtype strings")
    return entry


def dequantize_state_dict_int8(obj: dict[str, object]) -> dict[str, Tensor]:
    """Invert the export: int8·scale back to each tensor's original float dtype.

    Every entry is type-checked first, because an artifact is untrusted input: a malformed
    one must be a one-line DataFormatError, never a crash deep inside torch.
    """
    for key in ("quantized", "scales", "dtypes", "passthrough"):
        if key not in obj:
            raise DataFormatError(f"artifact dict lacks the {key!r} entry of {QUANT_FORMAT}")
    quantized = _tensor_dict(obj, "quantized")
    scales = _tensor_dict(obj, "scales")
    dtypes = _str_dict(obj, "dtypes")
    passthrough = _tensor_dict(obj, "passthrough")
    orig_dtypes = _str_dict(obj, "passthrough_orig_dtypes")
    qmeta = obj.get("qmeta", {})
    if not isinstance(qmeta, dict) or not all(isinstance(v, dict) for v in qmeta.values()):
        raise DataFormatError("artifact entry 'qmeta' must map names to dicts")
    out: dict[str, Tensor] = {}
    for name, q in quantized.items():
        if name not in scales or name not in dtypes:
            raise DataFormatError(f"artifact tensor {name!r} has no scale or dtype entry")
        dtype = _torch_dtype(dtypes[name], floating=True)
        scale = scales[name]
        if qmeta.get(name, {}).get("scheme") == "per_row" or scale.ndim > 0:
            if q.ndim == 0 or scale.numel() != q.shape[0]:
                raise DataFormatError(
                    f"artifact tensor {name!r}: {scale.numel()} row scales for shape {tuple(q.shape)}"
                )
            row_scale = scale.to(dtype=torch.float32).view(q.shape[0], *([1] * (q.ndim - 1)))
            out[name] = (q.float() * row_scale).to(dtype=dtype).contiguous()
        else:
            out[name] = (q.float() * float(scale.item())).to(dtype=dtype).contiguous()
    for name, t in passthrough.items():
        restored = t.detach().to("cpu").contiguous()
        if name in orig_dtypes:
            restored = restored.to(dtype=_torch_dtype(orig_dtypes[name])).contiguous()
        out[name] = restored
    return out


def _compress(raw: bytes, path: Path) -> bytes:
    if path.suffix == ".ptz":
        return zlib.compress(raw, level=ZLIB_LEVEL)
    if path.suffix == ".ptzst":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
    raise UsageError(f"artifact path {path} must end in .ptz (zlib) or .ptzst (zstd)")


def save_artifact(state_dict: dict[str, Tensor], path: str | Path) -> int:
    """Quantize, ``torch.save`` and compress to ``path``; returns the compressed byte count."""
    obj, _ = quantize_state_dict_int8(state_dict)
    return save_quantized(obj, path)


def save_quantized(obj: dict[str, object], path: str | Path) -> int:
    """Write an already-quantized dict (``torch.save`` + compression by suffix); returns bytes written."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    blob = _compress(buffer.getvalue(), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return len(blob)


def _decompress(blob: bytes, path: Path) -> bytes:
    """Decompress by content (zstd frame magic, else zlib), capped against bombs."""
    try:
        if blob.startswith(ZSTD_MAGIC):
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob))
            raw = reader.read(MAX_DECOMPRESSED_BYTES + 1)
        else:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(blob, MAX_DECOMPRESSED_BYTES + 1)
            if not inflater.eof and len(raw) <= MAX_DECOMPRESSED_BYTES:
                raise DataFormatError(f"{path}: truncated compressed artifact")
    except (zlib.error, zstandard.ZstdError) as exc:
        raise DataFormatError(f"{path}: not a zlib or zstd compressed artifact ({exc})") from None
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise DataFormatError(f"{path}: artifact inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    return raw


def load_quantized(path: str | Path) -> dict[str, object]:
    """Read the raw ``int8_clean_per_row_v1`` dict from a compressed artifact, safely."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read artifact ({exc.strerror or exc})") from None
    if not blob:
        raise DataFormatError(f"{path}: artifact file is empty")
    raw = _decompress(blob, path)
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        first_sentence = text.split(". ")[0].removesuffix(".")
        raise DataFormatError(f"{path}: not a torch-saved artifact ({first_sentence})") from None
    if not isinstance(obj, dict) or obj.get("__quant_format__") != QUANT_FORMAT:
        found = obj.get("__quant_format__") if isinstance(obj, dict) else type(obj).__name__
        raise DataFormatError(f"{path}: expected quant format {QUANT_FORMAT!r}, found {found!r}")
    for key in ("quantized", "scales", "dtypes", "passthrough"):
        if not isinstance(obj.get(key), dict):
            raise DataFormatError(f"{path}: artifact entry {key!r} is missing or not a dict")
    return obj


def load_artifact(path: str | Path) -> dict[str, Tensor]:
    """Load a ``.ptz``/``.ptzst`` artifact as a float state dict (the round-trip weights)."""
    obj = load_quantized(path)
    try:
        return dequantize_state_dict_int8(obj)
    except DataFormatError as exc:
        raise DataFormatError(f"{path}: {exc}") from None


_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")


def _shape(state_dict: dict[str, Tensor], name: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(name)
    if tensor is None:
        raise DataFormatError(f"state dict has no {name!r}; not a reference/baseline GPT")
    if tensor.ndim != ndim:
        raise DataFormatError(f"state dict tensor {name!r} has shape {tuple(tensor.shape)}, expected {ndim} dims")
    return tuple(tensor.shape)


def infer_config(state_dict: dict[str, Tensor]) -> GPTConfig:
    """Recover the GPTConfig from tensor shapes; shape-invisible constants keep baseline defaults.

    Heads come from ``q_gain`` (one gain per head), KV heads from ``c_k`` rows / head_dim,
    the MLP multiple from ``fc`` rows / width, tying from the absence of ``lm_head.weight``.
    """
    vocab_size, model_dim = _shape(state_dict, "tok_emb.weight", 2)
    indices = {int(m.group(1)) for name in state_dict if (m := _BLOCK_INDEX.match(name))}
    if not indices or indices != set(range(len(indices))):
        raise DataFormatError(f"state dict block indices {sorted(indices)} are not 0..n-1")
    num_layers = len(indices)
    (num_heads,) = _shape(state_dict, "blocks.0.attn.q_gain", 1)
    if num_heads == 0 or model_dim % num_heads:
        raise DataFormatError(f"q_gain has {num_heads} heads, which does not divide width {model_dim}")
    head_dim = model_dim // num_heads
    kv_rows, _ = _shape(state_dict, "blocks.0.attn.c_k.weight", 2)
    fc_rows, _ = _shape(state_dict, "blocks.0.mlp.fc.weight", 2)
    if kv_rows % head_dim or fc_rows % model_dim:
        raise DataFormatError(
            f"c_k rows {kv_rows} / fc rows {fc_rows} do not fit head_dim {head_dim}, width {model_dim}"
        )
    tie = "lm_head.weight" not in state_dict
    try:
        config = GPTConfig(
            vocab_size=vocab_size,
            num_layers=num_layers,
            model_dim=model_dim,
            num_heads=num_heads,
            num_kv_heads=kv_rows // head_dim,
            mlp_mult=fc_rows // model_dim,
            tie_embeddings=tie,
        )
    except (ValueError, ZeroDivisionError) as exc:
        raise DataFormatError(f"state dict shapes give an impossible model: {exc}") from None
    return config


def model_from_state_dict(state_dict: dict[str, Tensor]) -> GPT:
    """Build a GPT with the inferred config and load the weights strictly (fp32 on CPU)."""
    model = GPT(infer_config(state_dict))
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    if unexpected or missing:
        raise DataFormatError(
            f"state dict does not match the inferred model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise DataFormatError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict({name: t.float() for name, t in state_dict.items()}, strict=True)
    return model


def model_from_artifact(path: str | Path) -> GPT:
    """The round-trip model of an artifact (ours or the baseline's), ready to evaluate."""
    return model_from_state_dict(load_artifact(path))
