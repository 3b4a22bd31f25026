"""int8 artifact: exact dict layout, error bounds, save/load round trips, hostile files, config inference."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import zstandard

from harness.errors import DataFormatError, UsageError
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import (
    dequantize_state_dict_int8,
    infer_config,
    load_artifact,
    model_from_artifact,
    quantize_state_dict_int8,
    save_artifact,
)


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny tensors gain nothing from more, and on a shared CPU
    two spinning OpenMP threads make every op wait for a second core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# D=256 puts c_q/attn.proj at exactly 65,536 elements: the threshold keeps them float.
SMALL = GPTConfig(vocab_size=1024, num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, mlp_mult=2)


def trained_looking_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = GPT(SMALL)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.02 if p.ndim == 2 else 0.1))
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def test_exact_dict_layout_for_a_small_model() -> None:
    obj, stats = quantize_state_dict_int8(trained_looking_state_dict())
    assert set(obj) == {
        "__quant_format__",
        "quantized",
        "scales",
        "dtypes",
        "passthrough",
        "qmeta",
        "passthrough_orig_dtypes",
    }
    assert obj["__quant_format__"] == "int8_clean_per_row_v1"
    big = {"tok_emb.weight"} | {f"blocks.{i}.mlp.{n}.weight" for i in range(2) for n in ("fc", "proj")}
    assert set(obj["quantized"]) == big
    assert set(obj["scales"]) == big
    assert obj["dtypes"] == {name: "float32" for name in big}
    assert obj["qmeta"] == {name: {"scheme": "per_row", "axis": 0} for name in big}
    fp16_kept = {f"blocks.{i}.attn.{n}.weight" for i in range(2) for n in ("c_q", "c_k", "c_v", "proj")}
    control = {f"blocks.{i}.{n}" for i in range(2) for n in ("attn.q_gain", "attn_scale", "mlp_scale", "resid_mix")}
    control.add("skip_weights")
    assert set(obj["passthrough"]) == fp16_kept | control
    assert obj["passthrough_orig_dtypes"] == {name: "float32" for name in fp16_kept}
    assert {obj["passthrough"][n].dtype for n in fp16_kept} == {torch.float16}
    assert {obj["passthrough"][n].dtype for n in control} == {torch.float32}
    assert obj["quantized"]["tok_emb.weight"].dtype == torch.int8
    assert obj["quantized"]["tok_emb.weight"].shape == (1024, 256)
    assert obj["scales"]["tok_emb.weight"].dtype == torch.float16
    assert obj["scales"]["tok_emb.weight"].shape == (1024,)
    assert stats["num_tensors"] == 22
    assert stats["num_float_tensors"] == 5
    assert stats["num_nonfloat_tensors"] == 0
    assert stats["param_count"] == sum(t.numel() for t in trained_looking_state_dict().values())
    int8_bytes = 1024 * 256 + 4 * 512 * 256 + 2 * (1024 + 2 * 512 + 2 * 256)  # q + fp16 row scales
    fp16_bytes = 2 * 2 * (2 * 65536 + 2 * 32768)
    fp32_bytes = 4 * (2 * (4 + 256 + 256 + 512) + 256)
    assert stats["int8_payload_bytes"] == int8_bytes + fp16_bytes + fp32_bytes


def test_per_row_error_is_at_most_half_a_step() -> None:
    torch.manual_seed(1)
    weight = torch.randn(64, 2048) * torch.linspace(0.5, 3.0, 64)[:, None]  # rows of very different range
    obj, _ = quantize_state_dict_int8({"w": weight})
    restored = dequantize_state_dict_int8(obj)["w"]
    q = obj["quantized"]["w"]
    scale16 = obj["scales"]["w"].float()
    clip = torch.quantile(weight.abs(), 0.9999984, dim=1)
    scale32 = clip / 127.0
    assert bool((scale32 > 1 / 127).all())  # no row hits the scale floor here
    assert torch.equal(q.abs().max(dim=1).values, torch.full((64,), 127, dtype=torch.int8))
    assert torch.allclose(scale16, scale32, rtol=2**-11, atol=0)
    # error vs. the clipped weight: half a quantization step, plus the fp16 rounding of the scale
    clipped = torch.maximum(torch.minimum(weight, clip[:, None]), -clip[:, None])
    bound = scale32 / 2 + 127 * (scale16 - scale32).abs()
    err = (restored - clipped).abs().max(dim=1).values
    assert bool((err <= bound * (1 + 1e-6)).all())
    # clipping at the 99.99984th percentile of 2048 values only trims the largest |w| a little
    excess = weight.abs().max(dim=1).values - clip
    assert bool((excess < 0.01 * clip).all())
    assert bool(((restored - weight).abs().max(dim=1).values <= bound * (1 + 1e-6) + excess).all())


def test_small_scale_floor_and_non_matrix_tensors() -> None:
    tiny_rows = torch.full((2, 40000), 1e-4)
    vector = torch.linspace(-2.0, 2.0, 70000)
    counts = torch.arange(10, dtype=torch.int64)
    bf16 = torch.randn(8, 8).bfloat16()
    obj, stats = quantize_state_dict_int8({"tiny": tiny_rows, "vec": vector, "counts": counts, "half": bf16})
    # per-row scales never drop below 1/127, so near-zero rows quantize to zero
    assert obj["scales"]["tiny"].float().tolist() == pytest.approx([1 / 127, 1 / 127], rel=1e-3)
    assert int(obj["quantized"]["tiny"].abs().max()) == 0
    # a 1-D tensor gets one fp32 scalar scale and no qmeta entry
    assert obj["scales"]["vec"].ndim == 0 and obj["scales"]["vec"].dtype == torch.float32
    assert set(obj["qmeta"]) == {"tiny"}
    restored = dequantize_state_dict_int8(obj)
    step = float(obj["scales"]["vec"])
    assert (restored["vec"] - vector.clamp(-step * 127, step * 127)).abs().max().item() <= step / 2 + 1e-7
    assert torch.equal(restored["counts"], counts)
    assert stats["num_nonfloat_tensors"] == 1
    assert obj["passthrough_orig_dtypes"] == {"half": "bfloat16"}
    assert restored["half"].dtype == torch.bfloat16
    assert torch.equal(restored["half"], bf16.half().bfloat16())


@pytest.mark.parametrize(("suffix", "magic"), [(".ptz", b"\x78\xda"), (".ptzst", b"\x28\xb5\x2f\xfd")])
def test_save_and_load_round_trip(tmp_path: Path, suffix: str, magic: bytes) -> None:
    state = trained_looking_state_dict()
    path = tmp_path / f"model{suffix}"
    written = save_artifact(state, path)
    blob = path.read_bytes()
    assert written == len(blob)
    assert blob.startswith(magic)
    loaded = load_artifact(path)
    expected = dequantize_state_dict_int8(quantize_state_dict_int8(state)[0])
    assert set(loaded) == set(state)
    for name in state:
        assert torch.equal(loaded[name], expected[name]), name
        assert loaded[name].dtype == torch.float32


def test_zstd_artifact_is_smaller_than_zlib(tmp_path: Path) -> None:
    state = trained_looking_state_dict()
    assert save_artifact(state, tmp_path / "a.ptzst") < save_artifact(state, tmp_path / "a.ptz")


def test_unknown_suffix_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"must end in \.ptz \(zlib\) or \.ptzst \(zstd\)"):
        save_artifact({"w": torch.zeros(2)}, tmp_path / "model.pt")


class NotATensor:
    """A class a weights-only unpickler must refuse to construct."""


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "artifact file is empty"),
        (b"not compressed at all", "not a zlib or zstd compressed artifact"),
        (zlib.compress(b"plain text, not a torch file", 9), "not a torch-saved artifact"),
        (
            zlib.compress(_torch_bytes({"__quant_format__": "int4_something"}), 9),
            "expected quant format 'int8_clean_per_row_v1', found 'int4_something'",
        ),
        (zlib.compress(_torch_bytes({"w": torch.zeros(3)}), 9), "found None"),
        (zlib.compress(_torch_bytes([1, 2, 3]), 9), "found 'list'"),
        (
            zlib.compress(_torch_bytes({"__quant_format__": "int8_clean_per_row_v1", "quantized": {}}), 9),
            "'scales' is missing",
        ),
        (zstandard.ZstdCompressor().compress(_torch_bytes(NotATensor())), "not a torch-saved artifact"),
    ],
)
def test_corrupt_or_foreign_artifacts_raise_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.ptz"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message) as info:
        load_artifact(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def _int8_dict(**changes: object) -> dict[str, object]:
    valid = {
        "__quant_format__": "int8_clean_per_row_v1",
        "quantized": {"w": torch.zeros(3, 4, dtype=torch.int8)},
        "scales": {"w": torch.ones(3, dtype=torch.float16)},
        "dtypes": {"w": "float32"},
        "passthrough": {},
    }
    return valid | changes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"passthrough": {"x": 5}}, "artifact entry 'passthrough' must map names to tensors"),
        ({"scales": {"w": 2.0}}, "artifact entry 'scales' must map names to tensors"),
        ({"quantized": {"w": [1, 2]}}, "artifact entry 'quantized' must map names to tensors"),
        ({"dtypes": {"w": 5}}, "artifact entry 'dtypes' must map names to dtype strings"),
        ({"dtypes": {"w": "load"}}, "unknown or non-float dtype 'load'"),
        ({"dtypes": {"w": "int8"}}, "unknown or non-float dtype 'int8'"),
        ({"qmeta": 5}, "artifact entry 'qmeta' must map names to dicts"),
        ({"passthrough_orig_dtypes": {"x": 5}}, "'passthrough_orig_dtypes' must map names to dtype strings"),
        ({"scales": {"w": torch.ones(2)}}, r"artifact tensor 'w': 2 row scales for shape \(3, 4\)"),
        ({"dtypes": {}}, "artifact tensor 'w' has no scale or dtype entry"),
    ],
)
def test_malformed_int8_dicts_are_data_errors(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    path = tmp_path / "odd.ptz"
    path.write_bytes(zlib.compress(_torch_bytes(_int8_dict(**changes)), 9))
    with pytest.raises(DataFormatError, match=message) as info:
        load_artifact(path)
    assert str(info.value).startswith(f"{path}: ")
    path.write_bytes(zlib.compress(_torch_bytes(_int8_dict()), 9))
    assert torch.equal(load_artifact(path)["w"], torch.zeros(3, 4))


def test_truncated_and_missing_artifacts(tmp_path: Path) -> None:
    good = tmp_path / "good.ptz"
    save_artifact(trained_looking_state_dict(), good)
    cut = tmp_path / "cut.ptz"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match="truncated compressed artifact"):
        load_artifact(cut)
    with pytest.raises(DataFormatError, match="cannot read artifact"):
        load_artifact(tmp_path / "missing.ptz")


def test_pickled_object_inside_artifact_is_refused_not_executed(tmp_path: Path) -> None:
    payload = {
        "__quant_format__": "int8_clean_per_row_v1",
        "quantized": {},
        "scales": {},
        "dtypes": {},
        "passthrough": {"x": NotATensor()},
    }
    path = tmp_path / "evil.ptz"
    path.write_bytes(zlib.compress(_torch_bytes(payload), 9))
    with pytest.raises(DataFormatError, match="not a torch-saved artifact"):
        load_artifact(path)


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(),
        GPTConfig(num_layers=4, tie_embeddings=False),
        GPTConfig(vocab_size=2048, num_layers=3, model_dim=96, num_heads=6, num_kv_heads=2, mlp_mult=3),
        GPTConfig(vocab_size=512, num_layers=11, model_dim=64, num_heads=2, num_kv_heads=2, mlp_mult=4),
    ],
)
def test_infer_config_recovers_the_config_from_shapes(config: GPTConfig) -> None:
    with torch.device("meta"):
        state = GPT(config).state_dict()
    assert infer_config(state) == config


def test_infer_config_rejects_foreign_state_dicts() -> None:
    with pytest.raises(DataFormatError, match="no 'tok_emb.weight'"):
        infer_config({"transformer.wte.weight": torch.zeros(4, 4)})
    with torch.device("meta"):
        state = GPT(GPTConfig(num_layers=3)).state_dict()
    gap = {name: t for name, t in state.items() if not name.startswith("blocks.1.")}
    with pytest.raises(DataFormatError, match=r"block indices \[0, 2\] are not 0..n-1"):
        infer_config(gap)
    state["blocks.0.attn.q_gain"] = torch.zeros(7, device="meta")
    with pytest.raises(DataFormatError, match="q_gain has 7 heads, which does not divide width 512"):
        infer_config(state)


def test_model_from_artifact_is_the_round_trip_model(tmp_path: Path) -> None:
    state = trained_looking_state_dict()
    path = tmp_path / "m.ptzst"
    save_artifact(state, path)
    restored = model_from_artifact(path)
    assert restored.config == SMALL
    reference = GPT(SMALL)
    reference.load_state_dict(dequantize_state_dict_int8(quantize_state_dict_int8(state)[0]))
    original = GPT(SMALL)
    original.load_state_dict(state)
    ids = torch.randint(0, 1024, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = restored.eval().forward_logits(ids)
        assert torch.equal(got, reference.eval().forward_logits(ids))
        assert not torch.equal(got, original.eval().forward_logits(ids))


def test_artifact_with_wrong_shapes_does_not_load(tmp_path: Path) -> None:
    state = trained_looking_state_dict()
    state["blocks.1.mlp.fc.weight"] = torch.zeros(512, 128)
    path = tmp_path / "m.ptz"
    save_artifact(state, path)
    with pytest.raises(
        DataFormatError, match=r"'blocks.1.mlp.fc.weight' has shape \(512, 128\), expected \(512, 256\)"
    ):
        model_from_artifact(path)


def test_baseline_style_bf16_embedding_round_trips_to_an_fp32_model(tmp_path: Path) -> None:
    """The baseline trains with a bf16 tok_emb on CUDA, so its artifact records dtype 'bfloat16'."""
    state = trained_looking_state_dict()
    state["tok_emb.weight"] = state["tok_emb.weight"].bfloat16()
    obj, _ = quantize_state_dict_int8(state)
    assert obj["dtypes"]["tok_emb.weight"] == "bfloat16"
    path = tmp_path / "baseline.ptz"
    save_artifact(state, path)
    assert load_artifact(path)["tok_emb.weight"].dtype == torch.bfloat16
    model = model_from_artifact(path)
    assert model.tok_emb.weight.dtype == torch.float32
    assert torch.equal(model.tok_emb.weight, dequantize_state_dict_int8(obj)["tok_emb.weight"].float())
