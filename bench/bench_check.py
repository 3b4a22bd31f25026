"""Speed bench for golf-check against the targets of issue 3, on this machine.

Generates (deterministically, from templates in this file) a train_gpt-like program of 3,800
lines — hyperparameters read from the environment, model classes, an optimizer, data loading,
a score-first evaluation over validation tokens, a training loop, quantization and
serialization — plus the same program as an lzma/base85 self-extracting shim, and a tree of 60
submission folders (~110k lines, 1,100–2,600 lines each, half of them shimmed, each with a
README, submission.json and a log). Then measures:

- the floor: ``ast.parse`` of the same decoded sources, in-process;
- golf-check on the single 3,800-line file (plain and shimmed), wall time of a subprocess
  including interpreter start-up (target ≤ 1.5 s);
- the tree cold (cache emptied, both cores) (target ≤ 20 s) and warm (target ≤ 2 s).

Usage: ``python bench/bench_check.py [--workdir DIR] [--repeat N] [--tree-repeat N]``. The
harness is run from a byte-compiled snapshot, as installed. Every figure is the median of
several runs, each run printed too: wall times on a shared 2-core machine vary by a few tenths
of a second from run to run. Prints figures and ratios; it asserts nothing (speed is reported,
not tested).
"""

from __future__ import annotations

import argparse
import ast
import base64
import compileall
import json
import lzma
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINGLE_LINES = 3800
TREE_SIZE = 60
TREE_LINES = 110_000
TARGET_SINGLE_S = 1.5
TARGET_TREE_COLD_S = 20.0
TARGET_TREE_WARM_S = 2.0

HEADER = '''"""Generated benchmark trainer {tag}: a GPT trained on FineWeb shards, scored on validation."""
import glob
import io
import lzma
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    seed = int(os.environ.get("SEED", 1337))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 1024))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 524288))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 524288))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_layers = int(os.environ.get("NUM_LAYERS", 9))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    matrix_lr = float(os.environ.get("MATRIX_LR", 0.04))
    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
    ttt_lr = float(os.environ.get("TTT_LR", 0.002))


def load_data_shard(file: Path) -> Tensor:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520:
        raise ValueError(f"bad shard header {{file}}")
    num_tokens = int(header[2])
    tokens = np.fromfile(file, dtype="<u2", count=num_tokens, offset=256 * 4)
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


def load_validation_tokens(pattern: str, seq_len: int) -> Tensor:
    files = [Path(p) for p in sorted(glob.glob(pattern))]
    tokens = torch.cat([load_data_shard(file) for file in files]).contiguous()
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    return tokens[: usable + 1]


class TokenStream:
    def __init__(self, pattern: str):
        self.files = [Path(p) for p in sorted(glob.glob(pattern))]
        self.file_idx = 0
        self.tokens = load_data_shard(self.files[0])
        self.pos = 0

    def take(self, n: int) -> Tensor:
        chunks = []
        remaining = n
        while remaining > 0:
            avail = self.tokens.numel() - self.pos
            if avail <= 0:
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens = load_data_shard(self.files[self.file_idx])
                self.pos = 0
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)
'''

TEMPLATES = [
    """

class RMSNorm{i}(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.float() * scale).type_as(x) * self.weight
""",
    """

class Rotary{i}(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache = None

    def forward(self, seq_len: int, device) -> tuple[Tensor, Tensor]:
        if self._cache is None or self._cache[0] != seq_len:
            t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cache = (seq_len, freqs.cos()[None, None], freqs.sin()[None, None])
        return self._cache[1], self._cache[2]


def apply_rotary_{i}(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
""",
    """

class CausalSelfAttention{i}(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, dim, bias=False)
        self.c_v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((num_heads,), 1.5))

    def forward(self, x: Tensor) -> Tensor:
        bsz, seqlen, dim = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        q = F.rms_norm(q, (q.size(-1),)) * self.q_gain.to(q.dtype)[None, :, None, None]
        k = F.rms_norm(k, (k.size(-1),))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().reshape(bsz, seqlen, dim))
""",
    """

class MLP{i}(nn.Module):
    def __init__(self, dim: int, mult: int = 2):
        super().__init__()
        hidden = mult * dim
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.fc(x))
        return self.proj(x.square())
""",
    """

def zeropower_via_newtonschulz_{i}(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + eps
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


class Muon{i}(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"])
                g = zeropower_via_newtonschulz_{i}(g, steps=group["backend_steps"])
                p.add_(g, alpha=-group["lr"] * max(1, p.size(0) / p.size(1)) ** 0.5)
""",
    """

def build_luts_{i}(sp, vocab_size: int, device) -> tuple[Tensor, Tensor, Tensor]:
    base_bytes = np.zeros((vocab_size,), dtype=np.int16)
    has_space = np.zeros((vocab_size,), dtype=np.bool_)
    is_boundary = np.ones((vocab_size,), dtype=np.bool_)
    for token_id in range(sp.vocab_size()):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        is_boundary[token_id] = False
        if sp.is_byte(token_id):
            base_bytes[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith("\\u2581"):
            has_space[token_id] = True
            piece = piece[1:]
        base_bytes[token_id] = len(piece.encode("utf-8"))
    return (torch.tensor(base_bytes, device=device), torch.tensor(has_space, device=device),
            torch.tensor(is_boundary, device=device))
""",
    """

def eval_val_{i}(args, model, val_tokens: Tensor, base_bytes: Tensor, has_space: Tensor,
                 is_boundary: Tensor, rank: int = 0, world_size: int = 1) -> tuple[float, float]:
    seq_len = args.train_seq_len
    total_seqs = (val_tokens.numel() - 1) // seq_len
    seq_start = (total_seqs * rank) // world_size
    seq_end = (total_seqs * (rank + 1)) // world_size
    loss_sum = torch.zeros((), dtype=torch.float64)
    token_count = torch.zeros((), dtype=torch.float64)
    byte_count = torch.zeros((), dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for batch_start in range(seq_start, seq_end, 8):
            batch_end = min(batch_start + 8, seq_end)
            local = val_tokens[batch_start * seq_len : batch_end * seq_len + 1].to(torch.int64)
            x = local[:-1].reshape(-1, seq_len)
            y = local[1:].reshape(-1, seq_len)
            loss = model(x, y).detach()
            n = float(y.numel())
            loss_sum += loss.to(torch.float64) * n
            token_count += n
            prev_ids = x.reshape(-1)
            tgt_ids = y.reshape(-1)
            token_bytes = base_bytes[tgt_ids].to(torch.int16)
            token_bytes += (has_space[tgt_ids] & ~is_boundary[prev_ids]).to(torch.int16)
            byte_count += token_bytes.to(torch.float64).sum()
    if dist.is_available() and dist.is_initialized():
        for value in (loss_sum, token_count, byte_count):
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
    val_loss = loss_sum / token_count
    bits_per_token = val_loss.item() / math.log(2.0)
    model.train()
    return float(val_loss.item()), float(bits_per_token * token_count.item() / byte_count.item())
""",
    """

def quantize_state_{i}(state: dict) -> tuple[dict, dict]:
    quantized, scales = {{}}, {{}}
    for name, tensor in state.items():
        t = tensor.detach().float().cpu()
        if t.ndim < 2 or t.numel() < 65536:
            quantized[name] = t.to(torch.float16)
            continue
        clip = torch.quantile(t.abs().flatten()[:100000], 0.9999).clamp_min(1e-8)
        scale = (clip / 127.0).item()
        quantized[name] = torch.clamp(torch.round(t / scale), -127, 127).to(torch.int8)
        scales[name] = scale
    return quantized, scales


def serialize_{i}(model: nn.Module, path: str) -> int:
    quantized, scales = quantize_state_{i}(model.state_dict())
    buffer = io.BytesIO()
    torch.save({{"w": quantized, "s": scales}}, buffer)
    blob = lzma.compress(buffer.getvalue(), preset=9)
    with open(path, "wb") as handle:
        handle.write(blob)
    return len(blob)
""",
    """

def lr_schedule_{i}(step: int, total: int, warmdown: int, elapsed_ms: float, budget_ms: float) -> float:
    if warmdown <= 0:
        return 1.0
    if budget_ms <= 0:
        start = max(total - warmdown, 0)
        return max((total - step) / max(warmdown, 1), 0.0) if step >= start else 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = warmdown * step_ms
    remaining = max(budget_ms - elapsed_ms, 0.0)
    return remaining / max(warmdown_ms, 1e-9) if remaining <= warmdown_ms else 1.0


def log_{i}(msg: str, logfile: str | None = None) -> None:
    print(msg); t = time.time(); line = f"{{t:.3f}} {{msg}}"
    if logfile is not None:
        with open(logfile, "a", encoding="utf-8") as f: print(line, file=f)
""",
    """

class Block{i}(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(dim)
        self.mlp_norm = nn.RMSNorm(dim)
        self.attn = CausalSelfAttention{i}(dim, num_heads)
        self.mlp = MLP{i}(dim)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x))
        x = x + self.mlp_scale.to(x.dtype) * self.mlp(self.mlp_norm(x))
        return x
""",
    """

def bigram_hash_{i}(tokens: Tensor, buckets: int) -> Tensor:
    prev = torch.cat([torch.zeros_like(tokens[..., :1]), tokens[..., :-1]], dim=-1)
    return ((prev.to(torch.int64) * 1000003) ^ tokens.to(torch.int64)) % buckets


def ema_update_{i}(ema: dict, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name not in ema:
                ema[name] = param.detach().clone().float()
            else:
                ema[name].mul_(decay).add_(param.detach().float(), alpha=1.0 - decay)
""",
]

MAIN = """

class GPT(nn.Module):
    def __init__(self, args: Hyperparameters):
        super().__init__()
        self.tok_emb = nn.Embedding(args.vocab_size, args.model_dim)
        self.blocks = nn.ModuleList([Block0(args.model_dim, args.num_heads) for _ in range(args.num_layers)])
        self.final_norm = nn.RMSNorm(args.model_dim)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        x = F.rms_norm(self.tok_emb(input_ids), (self.tok_emb.weight.size(-1),))
        x0 = x
        for block in self.blocks:
            x = block(x, x0)
        logits = F.linear(self.final_norm(x), self.tok_emb.weight)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target_ids.reshape(-1))


def main() -> None:
    args = Hyperparameters()
    torch.manual_seed(args.seed)
    model = GPT(args)
    optimizer = Muon0(list(model.parameters()), lr=args.matrix_lr, momentum=0.95, backend_steps=5)
    stream = TokenStream(args.train_files)
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)
    base_bytes = torch.ones(args.vocab_size, dtype=torch.int16)
    has_space = torch.zeros(args.vocab_size, dtype=torch.bool)
    is_boundary = torch.zeros(args.vocab_size, dtype=torch.bool)
    t0 = time.perf_counter()
    for step in range(args.iterations):
        elapsed_ms = 1000.0 * (time.perf_counter() - t0)
        if elapsed_ms > 1000.0 * args.max_wallclock_seconds:
            break
        chunk = stream.take(args.train_batch_tokens + 1).to(torch.int64)
        x = chunk[:-1].reshape(-1, args.train_seq_len)
        y = chunk[1:].reshape(-1, args.train_seq_len)
        loss = model(x, y)
        loss.backward()
        scale = lr_schedule_0(step, args.iterations, 1200, elapsed_ms, 1000.0 * args.max_wallclock_seconds)
        for group in optimizer.param_groups:
            group["lr"] = args.matrix_lr * scale
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    size = serialize_0(model, "final_model.int8.ptz")
    code_bytes = len(Path(__file__).read_text(encoding="utf-8").encode("utf-8"))
    print(f"Total submission size int8+lzma: {{size + code_bytes}} bytes")
    val_loss, val_bpb = eval_val_0(args, model, val_tokens, base_bytes, has_space, is_boundary)
    print(f"final_int8_zlib_roundtrip_exact val_loss:{{val_loss:.8f}} val_bpb:{{val_bpb:.8f}}")


if __name__ == "__main__":
    main()
"""


def generate_program(lines: int, tag: str) -> str:
    """A valid train_gpt-like program of exactly ``lines`` lines (padded with comments)."""
    parts = [HEADER.format(tag=tag)]
    count = parts[0].count("\n")
    main_lines = MAIN.count("\n")
    index = 0
    while True:
        block = TEMPLATES[index % len(TEMPLATES)].format(i=index // len(TEMPLATES))
        if count + block.count("\n") + main_lines > lines:
            break
        parts.append(block)
        count += block.count("\n")
        index += 1
    parts.append(MAIN.format())
    count += main_lines
    parts.extend(f"# padding line {n}\n" for n in range(lines - count))
    text = "".join(parts)
    ast.parse(text)
    return text


def lzma_b85_shim(text: str) -> str:
    payload = base64.b85encode(lzma.compress(text.encode("utf-8"), preset=9)).decode("ascii")
    return f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{payload}")))\n'


def write_submission(folder: Path, program: str, shimmed: bool, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_text(lzma_b85_shim(program) if shimmed else program, encoding="utf-8")
    (folder / "README.md").write_text(
        f"# Bench submission {folder.name}\n\n```bash\nSEED={seed} torchrun --nproc_per_node=8 train_gpt.py\n```\n",
        encoding="utf-8",
    )
    val_bpb = 1.2 + seed / 1000.0
    seeds = [seed, seed + 100, seed + 200]
    (folder / "submission.json").write_text(
        json.dumps(
            {"name": folder.name, "github_id": "bench", "val_bpb": val_bpb, "date": "2026-04-01", "seeds": seeds}
        ),
        encoding="utf-8",
    )
    for run_seed in seeds:
        log = [f"seed: {run_seed}", "iterations: 20000", "train_seq_len: 1024", "model_dim: 512"]
        log += [f"step:{step}/20000 train_loss:{3.0 - step / 10000:.4f}" for step in range(0, 20000, 500)]
        log.append(f"final_int8_zlib_roundtrip_exact val_loss:{val_bpb * 0.69:.8f} val_bpb:{val_bpb:.8f}")
        (folder / f"train_seed{run_seed}.log").write_text("\n".join(log) + "\n", encoding="utf-8")


def tree_sizes(count: int, total: int) -> list[int]:
    """Deterministic sizes between 1,100 and 2,600 lines summing to ``total``."""
    rng = random.Random(20260401)
    sizes = [rng.randint(1100, 2600) for _ in range(count)]
    scale = total / sum(sizes)
    sizes = [max(1100, min(3800, round(size * scale))) for size in sizes]
    sizes[-1] += total - sum(sizes)
    return sizes


def snapshot_code(workdir: Path) -> Path:
    """Copy the harness and the rule catalog into the work folder and run golf-check from
    there. The cache key covers the harness's own code, so on a tree that other people are
    editing the warm run would otherwise measure a cold one; a snapshot is what a user runs
    anyway (an installed version)."""
    repository = Path(__file__).resolve().parents[1]
    snapshot = workdir / "code"
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(parents=True)
    for package in ("harness", "rules"):
        shutil.copytree(repository / package, snapshot / package, ignore=shutil.ignore_patterns("__pycache__"))
    # Byte-compiled as pip does when it installs a package: otherwise, where
    # PYTHONDONTWRITEBYTECODE is set (CI, this machine), every measured run would also
    # compile the harness's own 12k lines.
    compileall.compile_dir(snapshot, quiet=1)
    return snapshot


def golf_check_command() -> list[str]:
    return [sys.executable, "-m", "harness.cli.check"]


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run from the snapshot's folder: ``python -m`` puts the working directory first on the
    import path, so run from a checkout it would import that checkout's (uncompiled) harness."""
    start = time.perf_counter()
    result = subprocess.run(args, env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode == 2:
        raise SystemExit(f"golf-check failed: {result.stderr.strip()}")
    return elapsed, result.returncode


def floor_seconds(texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in texts:
            ast.parse(text)
        best = min(best, time.perf_counter() - start)
    return best


def report_row(label: str, seconds: float, target: float | None, floor: float | None) -> None:
    target_text = f"{target:7.1f}" if target else f"{'':>7}"
    ratio_text = f"{seconds / target:8.2f}x" if target else f"{'':>9}"
    floor_text = f"{seconds / floor:11.1f}x" if floor else f"{'':>12}"
    print(f"{label:<44} {seconds:8.3f} {target_text} {ratio_text} {floor_text}", flush=True)


def stage_breakdown(path: Path) -> list[tuple[str, float]]:
    """Seconds per stage of one analysis: imports, loading (with unwrapping), libcst parsing
    and each rule family, measured the way ``harness.check.engine.analyze`` runs them."""
    stages: list[tuple[str, float]] = []
    start = time.perf_counter()
    from harness.check.context import CheckContext, CheckOptions
    from harness.check.engine import FAMILIES
    from harness.check.parse import ParseFailure, parse_source
    from harness.loader import load_submission

    stages.append(("import loader + engine + families + libcst", time.perf_counter() - start))
    start = time.perf_counter()
    submission = load_submission(path)
    stages.append(("load_submission (discover, decode)", time.perf_counter() - start))
    ctx = CheckContext(submission=submission, options=CheckOptions())
    start = time.perf_counter()
    for source in submission.sources:
        try:
            ctx.parsed.append(parse_source(source))
        except ParseFailure:
            continue
    stages.append(("parse_source (libcst + positions)", time.perf_counter() - start))
    for family in FAMILIES:
        start = time.perf_counter()
        ctx.findings_so_far.extend(family.check(ctx))
        stages.append((f"{family.name} check", time.perf_counter() - start))
    return stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per single-file figure (median)")
    parser.add_argument("--tree-repeat", type=int, default=3, help="cold runs of the tree (median)")
    parser.add_argument(
        "--tree-submissions",
        type=int,
        default=TREE_SIZE,
        help="submissions in the tree (lines scale with it; default 60, ~110k lines)",
    )
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="golf-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cache_root = workdir / "cache"
    snapshot = snapshot_code(workdir)
    env = {**os.environ, "GOLF_HARNESS_CACHE": str(cache_root), "PYTHONPATH": str(snapshot)}
    sys.path.insert(0, str(snapshot))
    command = golf_check_command()

    single = generate_program(SINGLE_LINES, "single")
    plain_dir = workdir / "single_plain"
    shim_dir = workdir / "single_shim"
    for folder, text in ((plain_dir, single), (shim_dir, lzma_b85_shim(single))):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train_gpt.py").write_text(text, encoding="utf-8")
    tree = workdir / "records" / "track_10min_16mb"
    if tree.exists():
        shutil.rmtree(tree)
    programs = []
    count = args.tree_submissions
    for number, size in enumerate(tree_sizes(count, TREE_LINES * count // TREE_SIZE)):
        program = generate_program(size, f"sub{number:02d}")
        programs.append(program)
        write_submission(tree / f"2026-04-01_bench_{number:02d}", program, shimmed=number % 2 == 1, seed=number)
    tree_lines = sum(program.count("\n") for program in programs)

    imported = subprocess.run(
        [sys.executable, "-c", "import harness; print(harness.__file__)"],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not imported.startswith(str(snapshot)):
        raise SystemExit(f"the measured runs would import {imported}, not the snapshot {snapshot}")
    print(f"workdir: {workdir}")
    print(f"harness under test: {imported}")
    print(f"single submission: {SINGLE_LINES} lines decoded; tree: {count} submissions, {tree_lines} lines")
    print(f"{'measure':<44} {'seconds':>8} {'target':>7} {'vs target':>9} {'vs ast floor':>12}", flush=True)
    floor_single = floor_seconds([single], args.repeat)
    floor_tree = floor_seconds(programs, 1)
    start_s = statistics.median(timed_run([*command, "--version"], env)[0] for _ in range(args.repeat))
    report_row("start-up (golf-check --version)", start_s, None, None)
    report_row("ast.parse floor, single file", floor_single, None, None)
    for label, folder in (("plain", plain_dir), ("lzma/b85 shim", shim_dir)):
        runs = [
            timed_run([*command, str(folder / "train_gpt.py"), "--no-cache", "--format", "json"], env)[0]
            for _ in range(args.repeat)
        ]
        report_row(f"golf-check single file, {label}", statistics.median(runs), TARGET_SINGLE_S, floor_single)
        print(f"  runs: {', '.join(f'{run:.2f}' for run in runs)} s (median above)", flush=True)
    print("\nwhere the single-file time goes (in-process, one run):", flush=True)
    for stage, seconds in stage_breakdown(plain_dir / "train_gpt.py"):
        print(f"  {stage:<42} {seconds:8.3f}", flush=True)
    print(flush=True)
    report_row("ast.parse floor, tree", floor_tree, None, None)
    cold_runs = []
    for _ in range(args.tree_repeat):
        shutil.rmtree(cache_root, ignore_errors=True)
        cold_runs.append(timed_run([*command, str(tree), "--jobs", "2", "--format", "json"], env))
    cold_s, cold_code = statistics.median(run[0] for run in cold_runs), cold_runs[-1][1]
    report_row(f"golf-check tree cold, 2 jobs (exit {cold_code})", cold_s, TARGET_TREE_COLD_S, floor_tree)
    print(f"  cold runs: {', '.join(f'{run[0]:.2f}' for run in cold_runs)} s (median above)", flush=True)
    warm_s, warm_code = timed_run([*command, str(tree), "--jobs", "2", "--format", "json"], env)
    report_row(f"golf-check tree warm (exit {warm_code})", warm_s, TARGET_TREE_WARM_S, floor_tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
