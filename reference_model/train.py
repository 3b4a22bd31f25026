"""The reference trainer, in the shape of the challenge's baseline ``train_gpt.py``.

Read it top to bottom: hyperparameters (env-overridable), distributed setup, data, model and
optimizers, the training loop with periodic validation and a wall-clock cap, the int8
export, and the final score of the *round-trip* (dequantized) model.

Legality by construction: validation tokens are loaded once and only ever passed to
``eval_val_sums``, which scores under ``torch.inference_mode()``; they never reach a
backward pass, an optimizer step or the quantizer (which uses the weights alone).

Code bytes: the baseline counts its single ``train_gpt.py``. Our trainer's code is split
over modules, so ``CODE_MODULES`` lists every module this trainer runs that a submission
would have to ship (model, optimizer, loader, quantizer, validation, this file, and the
shard and byte-accounting readers plus the error types they raise); their UTF-8 source
bytes are the code bytes. Data preparation (the embedded corpus builder) and the CLI are
not counted, like the baseline's separate data scripts.

Run: ``python -m reference_model.train`` (env vars only, like the baseline), or
``golf-train``; under torchrun: ``torchrun --nproc_per_node=2 -m harness.cli.train ...``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from harness.data.byte_accounting import build_byte_luts, load_tokenizer
from harness.data.shards import load_validation_tokens, train_pattern, val_pattern
from harness.errors import DataFormatError, HarnessError, UsageError
from reference_model.data import DistributedTokenLoader
from reference_model.evaluate import ValSums, eval_val_sums
from reference_model.model import GPT, GPTConfig
from reference_model.optim import OptimizerSettings, build_optimizers, set_schedule
from reference_model.quantize import load_artifact, quantize_state_dict_int8, save_quantized

ARTIFACT_BYTE_CAP = 16_000_000
CODE_MODULES: tuple[str, ...] = (
    "reference_model.model",
    "reference_model.optim",
    "reference_model.data",
    "reference_model.quantize",
    "reference_model.evaluate",
    "reference_model.train",
    "harness.data.shards",
    "harness.data.byte_accounting",
    "harness.errors",
)
RESULT_FILE = "train_result.json"


@dataclass
class TrainConfig:
    """Every knob of a run. Field ``foo_bar`` is overridden by env var ``FOO_BAR`` (see ``from_env``)."""

    data_path: str = ""
    tokenizer_path: str = ""
    out_dir: str = "out/reference"
    run_id: str = ""
    seed: int = 1337
    artifact_name: str = "final_model.int8.ptz"
    # schedule
    iterations: int = 20000
    warmdown_iters: int = 1200
    max_wallclock_seconds: float = 600.0
    train_batch_tokens: int = 524_288
    train_seq_len: int = 1024
    micro_batches: int = 8  # world_size × grad_accum_steps; world_size must divide it
    val_batch_size: int = 524_288
    val_loss_every: int = 1000
    train_log_every: int = 200
    # model
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
    # optimizer
    embed_lr: float = 0.6
    head_lr: float = 0.008
    tied_embed_lr: float = 0.05
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.0
    verbose: bool = field(default=True, metadata={"env": False})

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainConfig:
        """A CPU-sized model and schedule for the embedded data: at most 100 s of training on 2 cores."""
        preset: dict[str, Any] = dict(
            iterations=250,
            warmdown_iters=100,
            max_wallclock_seconds=100.0,
            train_batch_tokens=4096,
            train_seq_len=256,
            micro_batches=2,
            val_batch_size=65_536,
            val_loss_every=250,  # validate at step 0 and at the end only: evaluation is costly on CPU
            train_log_every=25,
            num_layers=4,
            model_dim=128,
            num_heads=4,
            num_kv_heads=2,
            muon_momentum_warmup_steps=100,
        )
        return cls(**(preset | overrides))

    def with_env(self, environ: dict[str, str] | None = None) -> TrainConfig:
        """A copy with every field whose upper-case name is set in the environment overridden."""
        environ = dict(os.environ if environ is None else environ)
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            raw = environ.get(f.name.upper())
            if raw is None or f.metadata.get("env") is False:
                continue
            changes[f.name] = _parse_env_value(f.name.upper(), raw, type(getattr(self, f.name)))
        return dataclasses.replace(self, **changes)

    def model_config(self) -> GPTConfig:
        try:
            return GPTConfig(
                vocab_size=self.vocab_size,
                num_layers=self.num_layers,
                model_dim=self.model_dim,
                num_heads=self.num_heads,
                num_kv_heads=self.num_kv_heads,
                mlp_mult=self.mlp_mult,
                tie_embeddings=self.tie_embeddings,
                rope_base=self.rope_base,
                logit_softcap=self.logit_softcap,
                qk_gain_init=self.qk_gain_init,
                tied_embed_init_std=self.tied_embed_init_std,
            )
        except ValueError as exc:
            raise UsageError(f"impossible model shape: {exc}") from None

    def optimizer_settings(self) -> OptimizerSettings:
        names = {f.name for f in dataclasses.fields(OptimizerSettings)}
        return OptimizerSettings(**{name: getattr(self, name) for name in names})


def _parse_env_value(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: the round-trip score (with exact sums), the artifact and its size."""

    val_loss: float
    val_bpb: float
    sums: ValSums
    prequant_val_loss: float
    prequant_val_bpb: float
    steps: int
    train_time_ms: float
    artifact_path: Path
    code_bytes: int
    model_bytes: int
    log_path: Path

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + self.model_bytes

    @property
    def under_cap(self) -> bool:
        return self.total_bytes <= ARTIFACT_BYTE_CAP

    def to_json(self) -> dict[str, object]:
        return {
            "val_loss": self.val_loss,
            "val_bpb": self.val_bpb,
            "nll_sum": self.sums.nll_sum,
            "nll_sum_hex": float.hex(self.sums.nll_sum),
            "tokens": self.sums.tokens,
            "bytes": self.sums.bytes,
            "prequant_val_loss": self.prequant_val_loss,
            "prequant_val_bpb": self.prequant_val_bpb,
            "steps": self.steps,
            "train_time_ms": self.train_time_ms,
            "artifact_path": str(self.artifact_path),
            "code_bytes": self.code_bytes,
            "model_bytes": self.model_bytes,
            "total_bytes": self.total_bytes,
            "cap_bytes": ARTIFACT_BYTE_CAP,
            "log_path": str(self.log_path),
        }


def code_files() -> list[Path]:
    """Source files counted as the submission's code (see the module docstring)."""
    return [Path(importlib.import_module(name).__file__ or "") for name in CODE_MODULES]


def code_bytes() -> int:
    return sum(len(path.read_bytes()) for path in code_files())


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them this is one process."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def lr_multiplier(config: TrainConfig, step: int, elapsed_ms: float) -> float:
    """Linear warmdown to zero over the last ``warmdown_iters`` steps, or — with a wall-clock
    cap — over the time those steps are projected to take before the cap."""
    if config.warmdown_iters <= 0:
        return 1.0
    if config.max_wallclock_seconds <= 0:
        warmdown_start = max(config.iterations - config.warmdown_iters, 0)
        if warmdown_start <= step < config.iterations:
            return max((config.iterations - step) / max(config.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = config.warmdown_iters * step_ms
    remaining_ms = max(1000.0 * config.max_wallclock_seconds - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(config: TrainConfig) -> TrainResult:
    """Train, export the int8 artifact, and score the round-trip model; see the module docstring."""
    if not config.data_path or not config.tokenizer_path:
        raise UsageError("TrainConfig needs data_path and tokenizer_path")
    ctx = setup_distributed()
    if config.micro_batches % ctx.world_size:
        raise UsageError(f"world size {ctx.world_size} must divide MICRO_BATCHES={config.micro_batches}")
    grad_accum_steps = config.micro_batches // ctx.world_size
    if Path(config.artifact_name).suffix not in (".ptz", ".ptzst"):
        raise UsageError(f"artifact name {config.artifact_name!r} must end in .ptz (zlib) or .ptzst (zstd)")
    _seed_everything(config.seed)

    out_dir = Path(config.out_dir)
    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    log_path = out_dir / "logs" / f"{run_id}.txt"
    if ctx.is_main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")

    def log0(message: str) -> None:
        if not ctx.is_main:
            return
        if config.verbose:
            print(message, flush=True)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(message + "\n")

    for f in dataclasses.fields(config):
        log0(f"{f.name}: {getattr(config, f.name)}")
    log0(f"world_size: {ctx.world_size}")
    log0(f"grad_accum_steps: {grad_accum_steps}")
    log0(f"device: {ctx.device}")
    log0(f"torch: {torch.__version__}")

    # --- data: tokenizer byte tables, validation tokens (scoring only), training stream ---
    sp = load_tokenizer(Path(config.tokenizer_path))
    if int(sp.get_piece_size()) != config.vocab_size:
        raise DataFormatError(
            f"tokenizer {config.tokenizer_path} has {sp.get_piece_size()} pieces but VOCAB_SIZE={config.vocab_size}"
        )
    luts = build_byte_luts(sp, config.vocab_size)
    val_tokens = load_validation_tokens(val_pattern(config.data_path), config.train_seq_len)
    log0(f"val_tokens: {val_tokens.size - 1}")
    train_loader = DistributedTokenLoader(train_pattern(config.data_path), ctx.rank, ctx.world_size, ctx.device)
    local_val_tokens = config.val_batch_size // (ctx.world_size * grad_accum_steps)
    val_batch_seqs = max(1, local_val_tokens // config.train_seq_len)

    def validate(model: GPT) -> ValSums:
        return eval_val_sums(
            model, val_tokens, luts, config.train_seq_len, val_batch_seqs, ctx.rank, ctx.world_size, ctx.device
        )

    # --- model and optimizers ---
    base_model = GPT(config.model_config()).to(ctx.device)
    model: torch.nn.Module = base_model
    if ctx.enabled:
        model = DistributedDataParallel(base_model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    settings = config.optimizer_settings()
    optimizers, muon = build_optimizers(base_model, settings, fused=ctx.device.type == "cuda")
    log0(f"model_params: {sum(p.numel() for p in base_model.parameters())}")
    use_autocast = ctx.device.type == "cuda"

    # --- training loop ---
    max_wallclock_ms = 1000.0 * config.max_wallclock_seconds if config.max_wallclock_seconds > 0 else None
    training_time_ms = 0.0
    stop_after_step: int | None = None
    last_val = ValSums(nll_sum=math.nan, tokens=1, bytes=1)
    step = 0
    _synchronize(ctx.device)
    t0 = time.perf_counter()
    while True:
        last_step = step == config.iterations or (stop_after_step is not None and step >= stop_after_step)
        if last_step or (config.val_loss_every > 0 and step % config.val_loss_every == 0):
            _synchronize(ctx.device)
            training_time_ms += 1000.0 * (time.perf_counter() - t0)
            last_val = validate(base_model)
            log0(
                f"step:{step}/{config.iterations} val_loss:{last_val.val_loss:.4f} val_bpb:{last_val.val_bpb:.4f} "
                f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms"
            )
            _synchronize(ctx.device)
            t0 = time.perf_counter()
        if last_step:
            if stop_after_step is not None and step < config.iterations:
                log0(
                    f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms step:{step}/{config.iterations}"
                )
            break

        elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        set_schedule(optimizers, muon, step, lr_multiplier(config, step, elapsed_ms), settings)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        train_loss = torch.zeros((), device=ctx.device)
        for micro_step in range(grad_accum_steps):
            inputs, targets = train_loader.next_batch(config.train_batch_tokens, config.train_seq_len, grad_accum_steps)
            sync_now = not ctx.enabled or micro_step == grad_accum_steps - 1
            ddp = model if isinstance(model, DistributedDataParallel) and not sync_now else None
            no_sync = contextlib.nullcontext() if ddp is None else ddp.no_sync()
            with no_sync:
                with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=use_autocast):
                    loss = model(inputs, targets)
                train_loss += loss.detach()
                (loss * (1.0 / grad_accum_steps)).backward()
        train_loss /= grad_accum_steps
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(base_model.parameters(), config.grad_clip_norm)
        for optimizer in optimizers:
            optimizer.step()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        step += 1

        approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        if config.train_log_every > 0 and (
            step <= 10 or step % config.train_log_every == 0 or stop_after_step is not None
        ):
            log0(
                f"step:{step}/{config.iterations} train_loss:{train_loss.item():.4f} train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms"
            )
        reached_cap = max_wallclock_ms is not None and approx_ms >= max_wallclock_ms
        if ctx.enabled and max_wallclock_ms is not None:
            flag = torch.tensor(int(reached_cap), device=ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            reached_cap = bool(flag.item())
        if stop_after_step is None and reached_cap:
            stop_after_step = step

    # --- int8 export, then score the round-trip model ---
    artifact_path = out_dir / config.artifact_name
    compressor = "zstd" if artifact_path.suffix == ".ptzst" else "zlib"
    state = {name: t.detach().cpu() for name, t in base_model.state_dict().items()}
    n_code = code_bytes()
    if ctx.is_main:
        quantized, stats = quantize_state_dict_int8(state)
        model_bytes = save_quantized(quantized, artifact_path)
        log0(
            f"Serialized model int8+{compressor}: {model_bytes} bytes "
            f"(payload:{stats['int8_payload_bytes']} raw_tensor_bytes:{stats['baseline_tensor_bytes']})"
        )
        log0(f"Code size: {n_code} bytes ({len(CODE_MODULES)} files)")
        log0(f"Total submission size int8+{compressor}: {model_bytes + n_code} bytes (cap {ARTIFACT_BYTE_CAP})")
    if ctx.enabled:
        dist.barrier()
    model_bytes = artifact_path.stat().st_size
    base_model.load_state_dict(load_artifact(artifact_path), strict=True)
    _synchronize(ctx.device)
    t_eval = time.perf_counter()
    final = validate(base_model)
    eval_ms = 1000.0 * (time.perf_counter() - t_eval)
    log0(
        f"final_int8_{compressor}_roundtrip val_loss:{final.val_loss:.4f} val_bpb:{final.val_bpb:.4f} eval_time:{eval_ms:.0f}ms"
    )
    log0(f"final_int8_{compressor}_roundtrip_exact val_loss:{final.val_loss:.8f} val_bpb:{final.val_bpb:.8f}")
    result = TrainResult(
        val_loss=final.val_loss,
        val_bpb=final.val_bpb,
        sums=final,
        prequant_val_loss=last_val.val_loss,
        prequant_val_bpb=last_val.val_bpb,
        steps=step,
        train_time_ms=training_time_ms,
        artifact_path=artifact_path,
        code_bytes=n_code,
        model_bytes=model_bytes,
        log_path=log_path,
    )
    if ctx.is_main:
        (out_dir / RESULT_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result


BASELINE_DATA_PATH = "./data/datasets/fineweb10B_sp1024"
BASELINE_TOKENIZER_PATH = "./data/tokenizers/fineweb_1024_bpe.model"


def main() -> int:
    """Baseline-style entry: the full config from env vars only, data where the baseline keeps it.

    ``DATA_PATH``/``TOKENIZER_PATH`` default to the baseline's layout; errors are one line.
    """
    config = dataclasses.replace(
        TrainConfig(), data_path=BASELINE_DATA_PATH, tokenizer_path=BASELINE_TOKENIZER_PATH
    ).with_env()
    try:
        train(config)
    except HarnessError as exc:
        print(f"reference_model.train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank tears the group down while another still talks to it
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Skip C++ static destructors under torchrun: a gloo thread torn down there can abort
        # a finished process ("terminate called without an active exception").
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
