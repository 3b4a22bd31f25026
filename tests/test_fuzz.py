"""Property tests: whatever bytes a submission holds, loading and auditing it never raises.

Bounded for the suite (150 examples in all). The seed corpus and the mutations live here too
because ``bench/bench_fuzz.py`` (≥ 10,000 inputs) reuses them, so a crash found by either run
reproduces with the other.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.check.engine import analyze
from harness.findings import Finding, Severity, verdict_for
from harness.loader import load_submission
from harness.unwrap import unwrap_source
from tests.shims import (
    SIBLING_SHIM,
    wrap_bz2_hex,
    wrap_gzip_b64,
    wrap_lzma_b85,
    wrap_nested,
    wrap_raw_lzma2,
    wrap_split_literal,
)

PROGRAM = (
    "import os\nimport torch\n\n"
    "class Hyperparameters:\n"
    "    ttt_enabled = bool(int(os.environ.get('TTT_ENABLED', '0')))\n"
    "    val_files = os.environ.get('VAL_FILES', './data/fineweb_val_*.bin')\n\n"
    "def eval_val(model, val_tokens):\n"
    "    loss_sum = 0.0\n"
    "    with torch.no_grad():\n"
    "        for i in range(0, val_tokens.numel() - 1, 1024):\n"
    "            chunk = val_tokens[i : i + 1025]\n"
    "            loss_sum += model(chunk[:-1], chunk[1:]).item()  # noqa\n"
    "    return loss_sum\n"
)
PROGRAM_312 = 'row = {"a": 1}\nprint(f"{row["a"]} {f"{row["a"]}"}")\n'
README = "```\nTTT_ENABLED=1 SEED=42 torchrun --nproc_per_node=8 train_gpt.py\n```\n"
RUN_SH = "for SEED in 1 2 3; do SEED=$SEED TTT_ENABLED=1 torchrun train_gpt.py; done\n"
LOG = "ttt_enabled: True\ntrain_seq_len:1024 iterations:20000 seed:42\nstep:1/20000 train_loss:6.9\n"

CORPUS: tuple[str, ...] = (
    PROGRAM,
    PROGRAM_312,
    wrap_lzma_b85(PROGRAM),
    wrap_raw_lzma2(PROGRAM),
    wrap_split_literal(PROGRAM),
    wrap_gzip_b64(PROGRAM),
    wrap_bz2_hex(PROGRAM),
    wrap_nested(PROGRAM),
    wrap_lzma_b85(PROGRAM_312),
    SIBLING_SHIM,
)
_ALPHABET = b"()[]{}\"'\\#:=+.,;\n\t abcxyz019_~!@$%^&*|<>?/\x00\xff\xc3"


def mutate(data: bytes, rng: random.Random, rounds: int = 3) -> bytes:
    """Byte flips, insertions of syntax-significant bytes, deletions, duplications and
    truncation — the damage a corrupted download or a hostile author would do."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        if not buffer:
            buffer += bytes(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 8)))
            continue
        position = rng.randrange(len(buffer))
        action = rng.randrange(5)
        if action == 0:
            buffer[position] ^= 1 << rng.randrange(8)
        elif action == 1:
            buffer[position:position] = bytes(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 8)))
        elif action == 2:
            del buffer[position : position + rng.randint(1, 64)]
        elif action == 3:
            end = min(len(buffer), position + rng.randint(1, 64))
            buffer[position:position] = buffer[position:end]
        else:
            del buffer[position:]
    return bytes(buffer)


def audit_bytes(files: dict[str, bytes], single_file: bool) -> list[Finding]:
    """Write ``files`` into a fresh folder and run the full audit on it (folder or the
    ``train_gpt.py`` alone); returns the findings after checking their shape."""
    with tempfile.TemporaryDirectory(prefix="golf-fuzz-") as directory:
        folder = Path(directory)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        target = folder / "train_gpt.py" if single_file else folder
        findings = analyze(load_submission(target))
    for finding in findings:
        assert isinstance(finding, Finding)
        assert isinstance(finding.file, str) and isinstance(finding.line, int) and finding.line >= 0
    verdict_for(findings)
    return findings


_BOUNDED = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_BOUNDED
@given(data=st.binary(max_size=3000), single_file=st.booleans())
def test_random_bytes_never_raise(data: bytes, single_file: bool) -> None:
    findings = audit_bytes({"train_gpt.py": data}, single_file)
    if b"\x00" in data:
        assert any(f.rule == "PG000" and f.severity is Severity.ERROR for f in findings)


@_BOUNDED
@given(
    seed_index=st.integers(0, len(CORPUS) - 1),
    mutation_seed=st.integers(0, 2**32 - 1),
    rounds=st.integers(1, 6),
    single_file=st.booleans(),
)
def test_mutated_and_truncated_shims_never_raise(
    seed_index: int, mutation_seed: int, rounds: int, single_file: bool
) -> None:
    rng = random.Random(mutation_seed)
    entry = mutate(CORPUS[seed_index].encode("utf-8"), rng, rounds)
    files = {
        "train_gpt.py": entry,
        "train_gpt_decode.py": mutate(CORPUS[0].encode("utf-8"), rng, rounds),
        "README.md": mutate(README.encode(), rng, rounds),
        "run.sh": mutate(RUN_SH.encode(), rng, rounds),
        "train_seed42.log": mutate(LOG.encode(), rng, rounds),
    }
    audit_bytes(files, single_file)


@_BOUNDED
@given(seed_index=st.integers(0, len(CORPUS) - 1), cut=st.floats(0.0, 1.0), insert=st.text(max_size=20))
def test_corrupted_payloads_are_reported_not_raised(seed_index: int, cut: float, insert: str) -> None:
    text = CORPUS[seed_index]
    position = int(len(text) * cut)
    damaged = text[:position] + insert + text[position + len(insert) :]
    result = unwrap_source(damaged, "train_gpt.py", max_bytes=1 << 20)
    assert all(isinstance(problem, str) and problem for problem in result.problems)
    assert all(source.depth >= 1 and source.line >= 1 for source in result.decoded)
