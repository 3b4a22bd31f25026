"""Precision of the mechanism detectors on shapes a probe run found misjudged.

Each case pairs the shape with its exact outcome: a training budget below 600 s is a
calibration reserve (PG302, R-TIME-TRAIN), expert-gate weights count only where a gate reads
the target (PG201, #2041), numeric env defaults are fixed byte ratios too (PG204, #2009), a
training-shard pattern handed to a helper is still read (PG302), a BOS mask applied one
statement later still masks (PG203, #1851) and a BOS id that only splits documents is no
boundary rule for the leading-space byte (PG204, issue #897).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import harness.check.rules_runtime_io as rules_runtime_io
import harness.check.rules_scoring as rules_scoring
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import Setting, SourceFile, Submission

HERE = Path(__file__).parent


def _context(code: str, settings: dict[str, Setting] | None = None) -> CheckContext:
    source = SourceFile(display_name="train_gpt.py", path=HERE / "train_gpt.py", text=textwrap.dedent(code), is_entry=True)
    submission = Submission(root=HERE, name="case", sources=[source], settings=settings or {})
    return CheckContext(submission=submission, parsed=[parse_source(source)])


def _scoring(code: str, settings: dict[str, Setting] | None = None) -> list[Finding]:
    return rules_scoring.check(_context(code, settings))


def _runtime_io(code: str, settings: dict[str, Setting] | None = None) -> list[Finding]:
    return rules_runtime_io.check(_context(code, settings))


def _loud(findings: list[Finding]) -> list[tuple[str, str, int]]:
    return [(f.rule, f.severity.value, f.line) for f in findings if f.severity is not Severity.INFO]


def _setting(name: str, value: str, kind: str = "readme", file: str = "README.md", line: int = 5) -> dict[str, Setting]:
    return {name: Setting(name=name, value=value, file=file, line=line, source_kind=kind)}


# ---- 1. PG302: a wall-clock budget below 600 s reserves the calibration time ----------------

CALIBRATION_AFTER_LOOP = """\
import os
import time

import torch


class Config:
    train_glob = os.path.join(os.environ.get("DATA_DIR", "./data"), "fineweb_train_*.bin")
    steps = int(os.environ.get("STEPS", 9000))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    hessian_batches = int(os.environ.get("HESSIAN_BATCHES", 16))


class ShardStream:
    def __init__(self, pattern):
        self.pattern = pattern

    def next_batch(self, n_tokens, seq_len):
        raise StopIteration


def hessians_from(model, stream, n):
    acc = {}
    for _ in range(n):
        xb, _yb = stream.next_batch(131072, 1024)
        model.accumulate_hessian(xb, acc)
    return acc


def run(cfg, model, opt):
    stream = ShardStream(cfg.train_glob)
    began = time.perf_counter()
    step = 0
    while step < cfg.steps:
        xb, yb = stream.next_batch(393216, 1024)
        model(xb, yb).backward()
        opt.step()
        opt.zero_grad()
        step += 1
        if time.perf_counter() - began >= cfg.max_wallclock_seconds:
            break
    acc = hessians_from(model, stream, cfg.hessian_batches)
    torch.save(model.quantize(acc), "final_model.int6.ptz")
"""
CALIBRATION_LINE = 42


def test_wallclock_budget_below_600_from_the_readme_is_a_reserve() -> None:
    assert _runtime_io(CALIBRATION_AFTER_LOOP, _setting("MAX_WALLCLOCK_SECONDS", "588")) == []


def test_wallclock_budget_below_600_from_the_log_dump_is_a_reserve() -> None:
    settings = _setting("MAX_WALLCLOCK_SECONDS", "585.0", kind="log", file="train_seed0.log", line=12)
    assert _runtime_io(CALIBRATION_AFTER_LOOP, settings) == []


def test_wallclock_budget_below_600_as_the_code_default_is_a_reserve() -> None:
    code = CALIBRATION_AFTER_LOOP.replace('"MAX_WALLCLOCK_SECONDS", 600.0', '"MAX_WALLCLOCK_SECONDS", 590.0')
    assert _runtime_io(code) == []


def test_wallclock_budget_of_600_still_fails() -> None:
    assert [(f.rule, f.severity, f.line) for f in _runtime_io(CALIBRATION_AFTER_LOOP)] == [
        ("PG302", Severity.ERROR, CALIBRATION_LINE)
    ]
    (finding,) = _runtime_io(CALIBRATION_AFTER_LOOP, _setting("MAX_WALLCLOCK_SECONDS", "600"))
    assert (finding.rule, finding.line) == ("PG302", CALIBRATION_LINE)
    assert "no reserved slice" in finding.message


def test_readme_raising_a_lower_code_default_back_to_600_fails() -> None:
    code = CALIBRATION_AFTER_LOOP.replace('"MAX_WALLCLOCK_SECONDS", 600.0', '"MAX_WALLCLOCK_SECONDS", 590.0')
    (finding,) = _runtime_io(code, _setting("MAX_WALLCLOCK_SECONDS", "600"))
    assert (finding.rule, finding.severity, finding.line) == ("PG302", Severity.ERROR, CALIBRATION_LINE)


def test_millisecond_budget_through_a_local_name() -> None:
    code = CALIBRATION_AFTER_LOOP.replace(
        'max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))',
        'train_budget_ms = float(os.environ.get("TRAIN_BUDGET_MS", 600000))',
    ).replace(
        "        if time.perf_counter() - began >= cfg.max_wallclock_seconds:\n",
        "        if 1000.0 * (time.perf_counter() - began) >= stop_ms:\n",
    ).replace(
        "    began = time.perf_counter()\n",
        "    stop_ms = cfg.train_budget_ms if cfg.train_budget_ms > 0 else None\n    began = time.perf_counter()\n",
    )
    line = CALIBRATION_LINE + 1
    assert [(f.rule, f.line) for f in _runtime_io(code)] == [("PG302", line)]
    assert _runtime_io(code, _setting("TRAIN_BUDGET_MS", "586000")) == []


def test_budget_reserve_does_not_cover_reads_after_the_final_save() -> None:
    code = CALIBRATION_AFTER_LOOP + "    extra = hessians_from(model, stream, 4)\n"
    (finding,) = _runtime_io(code, _setting("MAX_WALLCLOCK_SECONDS", "588"))
    assert (finding.rule, finding.line) == ("PG302", CALIBRATION_LINE + 2)
    assert "after the final model is serialized" in finding.message


# ---- 2. PG201: expert-gate weights count only where a gate reads the target ----------------

TILT_SCORER = """\
import math
import os

import numpy as np


class Knobs:
    tilt_beta = float(os.environ.get("TILT_BETA", "0.6"))
    word_boost = float(os.environ.get("WORD_BOOST", "0"))
    within_boost = float(os.environ.get("WITHIN_BOOST", "0"))


def log_norm(v):
    top = v.max()
    return top + np.log(np.exp(v - top).sum())


def tilt_score(k, logits, toks, starts_word, start_bias, inner_bias, table):
    nll = 0.0
    for p in range(2, len(toks)):
        key = (toks[p - 2] * 1000003) ^ toks[p - 1]
        row = logits[p - 1].astype(np.float64)
        guess = table.get(key, -1)
        if guess >= 0:
            row = row.copy()
            row[guess] += k.tilt_beta
        if k.word_boost > 0 and starts_word[toks[p - 1]]:
            row = row + k.word_boost * start_bias
        if k.within_boost > 0 and not starts_word[toks[p - 1]]:
            row = row + k.within_boost * inner_bias
        logp = row - log_norm(row)
        nll -= float(logp[toks[p]])
        table[key] = int(toks[p])
    return nll / math.log(2.0)
"""
BOOSTS_ON = {
    **_setting("WORD_BOOST", "0.3", line=7),
    **_setting("WITHIN_BOOST", "0.2", line=7),
}


def test_word_boosts_gated_on_the_previous_token_are_legal() -> None:
    assert _loud(_scoring(TILT_SCORER, BOOSTS_ON)) == []


def test_word_boosts_gated_on_the_target_are_pg201_at_setting_and_gate() -> None:
    code = TILT_SCORER.replace("starts_word[toks[p - 1]]", "starts_word[toks[p]]")
    findings = _scoring(code, BOOSTS_ON)
    assert _loud(findings) == [
        ("PG201", "error", 9),
        ("PG201", "error", 10),
        ("PG201", "error", 27),
        ("PG201", "error", 29),
    ]
    setting = findings[0]
    assert "`word_boost` = 0.3 (WORD_BOOST=0.3 in README.md:7)" in setting.message
    assert [step.line for step in setting.path] == [9, 27]


def test_renamed_target_gated_boost_is_found_by_its_shape() -> None:
    code = (
        TILT_SCORER.replace("starts_word[toks[p - 1]]", "starts_word[toks[p]]")
        .replace("word_boost", "lift_a")
        .replace("within_boost", "lift_b")
        .replace("WORD_BOOST", "LIFT_A")
        .replace("WITHIN_BOOST", "LIFT_B")
    )
    on = {**_setting("LIFT_A", "0.3", line=7), **_setting("LIFT_B", "0.2", line=7)}
    findings = _scoring(code, on)
    assert _loud(findings) == [("PG201", "error", 27), ("PG201", "error", 29)]
    assert "starts_word[toks[p]]" in findings[0].message
    assert findings[0].message.endswith("LIFT_A=0.3 in README.md:7")
    # weights left at their code default 0: the branch never runs
    assert [(f.rule, f.severity.value, f.line) for f in _scoring(code)] == [
        ("PG201", "info", 27),
        ("PG201", "info", 29),
    ]


# ---- 3. PG204: a numeric env default is the same fixed bytes-per-token --------------------

FIXED_RATIO = """\
import math
import os


class Settings:
    tokens_per_byte_guess = float(os.environ.get("TOKENS_PER_BYTE_GUESS", "0"))
    bytes_per_token = float(os.environ.get("BYTES_PER_TOKEN", 2.436))


def report(cfg, nll_sum, n_tokens):
    val_loss = nll_sum / n_tokens
    val_bpb = val_loss / math.log(2.0) / cfg.bytes_per_token
    return val_loss, val_bpb
"""


def test_numeric_env_default_bytes_per_token_is_pg204() -> None:
    (finding,) = _scoring(FIXED_RATIO)
    assert (finding.rule, finding.severity, finding.line) == ("PG204", Severity.ERROR, 12)
    assert [step.line for step in finding.path] == [7, 12]


def test_keyword_and_getenv_numeric_defaults_count_too() -> None:
    for read in ('os.environ.get("BYTES_PER_TOKEN", default=2.436)', 'os.getenv("BYTES_PER_TOKEN", 2.436)'):
        code = FIXED_RATIO.replace('os.environ.get("BYTES_PER_TOKEN", 2.436)', read)
        assert [(f.rule, f.line) for f in _scoring(code)] == [("PG204", 12)]


def test_counted_bytes_beside_a_numeric_default_field_are_legal() -> None:
    code = FIXED_RATIO.replace("def report(cfg, nll_sum, n_tokens):", "def report(cfg, nll_sum, n_tokens, n_bytes):").replace(
        "val_loss / math.log(2.0) / cfg.bytes_per_token", "val_loss / math.log(2.0) * n_tokens / n_bytes"
    )
    assert _scoring(code) == []


# ---- 4. PG302: a training-shard pattern handed to a helper that opens it -----------------

PREFILL_HELPER = """\
import glob
import math
import os

import numpy as np
import torch.nn.functional as F


class Paths:
    train_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_train_*.bin")
    val_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_val_*.bin")


def shard_tokens(path):
    return np.fromfile(path, dtype=np.uint16, offset=1024).astype(np.int64)


def count_pairs(shard_glob, vocab, limit):
    table = np.ones((vocab, vocab), dtype=np.float32)
    for path in sorted(glob.glob(shard_glob))[:limit]:
        ids = shard_tokens(path)
        np.add.at(table, (ids[:-1], ids[1:]), 1.0)
    return table


def warm_table(pattern, vocab):
    return count_pairs(pattern, vocab, 2)


def eval_with_pairs(paths, model, val_ids, vocab):
    table = warm_table(paths.train_files, vocab)
    probs = table / table.sum(1, keepdims=True)
    nll = 0.0
    for i in range(1, len(val_ids)):
        nll -= math.log(0.9 * float(F.softmax(model(val_ids[:i]), -1)[val_ids[i]]) + 0.1 * probs[val_ids[i - 1], val_ids[i]])
    return nll


def eval_val_pairs(paths, model, val_ids, vocab):
    table = count_pairs(paths.val_files, vocab, 1)
    return float(table.sum()) + len(val_ids)
"""


def test_training_pattern_passed_to_a_globbing_helper_is_pg302() -> None:
    (finding,) = _runtime_io(PREFILL_HELPER)
    assert (finding.rule, finding.severity, finding.line) == ("PG302", Severity.ERROR, 31)
    assert "eval_with_pairs" in finding.message
    assert [step.line for step in finding.path] == [30, 31, 27, 20]


def test_validation_pattern_passed_to_the_same_helper_is_not_pg302() -> None:
    code = PREFILL_HELPER.replace("warm_table(paths.train_files, vocab)", "warm_table(paths.val_files, vocab)")
    assert _runtime_io(code) == []


def test_helper_that_only_logs_the_training_pattern_is_not_a_read() -> None:
    code = PREFILL_HELPER.replace(
        "def warm_table(pattern, vocab):\n    return count_pairs(pattern, vocab, 2)\n",
        "def warm_table(pattern, vocab):\n    print(f'no prefill from {pattern}')\n    return np.ones((vocab, vocab))\n",
    )
    assert _runtime_io(code) == []


# ---- 5a. PG203: the BOS mask applied in the statement after the shift -------------------

SMEAR_TWO_STEP = """\
import torch
import torch.nn.functional as F

DOC_START = 1


class Smear(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = torch.nn.Linear(dim, 1)

    def forward(self, h, ids, cu_seqlens):
        shifted = F.pad(h, (0, 0, 1, 0))[:, :-1]
        keep = (ids != DOC_START).unsqueeze(-1).to(h.dtype)
        w = torch.sigmoid(self.proj(h))
        return h + w * shifted * keep
"""


def test_bos_mask_multiplied_in_a_later_statement_masks_the_smear() -> None:
    assert _scoring(SMEAR_TWO_STEP) == []


def test_mask_on_other_states_does_not_mask_the_smear() -> None:
    code = SMEAR_TWO_STEP.replace("return h + w * shifted * keep", "return h * keep + w * shifted")
    assert [(f.rule, f.severity, f.line) for f in _scoring(code)] == [("PG203", Severity.WARNING, 13)]


# ---- 5b. PG204: a BOS id used only to split documents is no boundary rule -----------------

PER_DOC_BYTES = """\
import math

import torch
import torch.nn.functional as F

BOS = 1


def eval_docs(model, val_ids, piece_bytes, has_leading_space, is_boundary_token):
    bos_positions = (val_ids == BOS).nonzero().flatten().tolist() + [val_ids.numel()]
    nll, n_tok, n_bytes = 0.0, 0, 0
    for a, b in zip(bos_positions[:-1], bos_positions[1:]):
        doc = val_ids[a:b]
        x, y = doc[:-1], doc[1:]
        nll += float(F.cross_entropy(model(x[None])[0], y, reduction="sum"))
        n_tok += y.numel()
        nb = piece_bytes[y] + has_leading_space[y].long()
        n_bytes += int(nb.sum())
    val_loss = nll / n_tok
    val_bpb = val_loss / math.log(2.0) * n_tok / n_bytes
    return val_loss, val_bpb
"""


def test_bos_used_only_to_split_documents_leaves_the_boundary_rule_missing() -> None:
    (finding,) = _scoring(PER_DOC_BYTES)
    assert (finding.rule, finding.severity, finding.line) == ("PG204", Severity.ERROR, 17)


def test_boundary_rule_in_the_byte_statement_is_legal() -> None:
    code = PER_DOC_BYTES.replace(
        "has_leading_space[y].long()", "(has_leading_space[y] & ~is_boundary_token[x]).long()"
    )
    assert _scoring(code) == []


def test_boundary_rule_applied_as_a_later_correction_is_legal() -> None:
    code = PER_DOC_BYTES.replace(
        "        n_bytes += int(nb.sum())\n",
        "        nb[is_boundary_token[x] & has_leading_space[y]] -= 1\n        n_bytes += int(nb.sum())\n",
    )
    assert _scoring(code) == []


def test_boundary_flag_computed_before_the_byte_statement_is_legal() -> None:
    code = PER_DOC_BYTES.replace(
        "        nb = piece_bytes[y] + has_leading_space[y].long()\n",
        "        after_text = ~is_boundary_token[x]\n        nb = piece_bytes[y] + (has_leading_space[y] & after_text).long()\n",
    )
    assert _scoring(code) == []
