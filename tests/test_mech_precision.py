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
    source = SourceFile(
        display_name="train_gpt.py", path=HERE / "train_gpt.py", text=textwrap.dedent(code), is_entry=True
    )
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
    code = (
        CALIBRATION_AFTER_LOOP.replace(
            'max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))',
            'train_budget_ms = float(os.environ.get("TRAIN_BUDGET_MS", 600000))',
        )
        .replace(
            "        if time.perf_counter() - began >= cfg.max_wallclock_seconds:\n",
            "        if 1000.0 * (time.perf_counter() - began) >= stop_ms:\n",
        )
        .replace(
            "    began = time.perf_counter()\n",
            "    stop_ms = cfg.train_budget_ms if cfg.train_budget_ms > 0 else None\n    began = time.perf_counter()\n",
        )
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
    code = FIXED_RATIO.replace(
        "def report(cfg, nll_sum, n_tokens):", "def report(cfg, nll_sum, n_tokens, n_bytes):"
    ).replace("val_loss / math.log(2.0) / cfg.bytes_per_token", "val_loss / math.log(2.0) * n_tokens / n_bytes")
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
    code = PER_DOC_BYTES.replace("has_leading_space[y].long()", "(has_leading_space[y] & ~is_boundary_token[x]).long()")
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


# ---- 7. PG201: arithmetic hash keys that append the target (#982, #779) --------------------

POLY_PAIR_BLEND = """\
import math

import numpy as np


def eval_pair_blend(probs, ids, n, lam, buckets):
    pair_counts = np.zeros(buckets, dtype=np.uint32)
    ctx_counts = np.zeros(buckets, dtype=np.uint32)
    nll_sum = 0.0
    for i in range(n):
        tgt = ids[i + 1]
        ctx = (ids[i] * 2654435761) % buckets
        pair = (ctx * 31 + tgt) % buckets
        p_ng = pair_counts[pair] / (ctx_counts[ctx] + 1.0)
        nll_sum -= math.log((1.0 - lam) * probs[i, tgt] + lam * p_ng)
        pair_counts[pair] += 1
        ctx_counts[ctx] += 1
    return nll_sum
"""


def test_polynomial_pair_key_read_for_the_blend_is_pg201_and_pg202() -> None:
    findings = _scoring(POLY_PAIR_BLEND)
    assert _loud(findings) == [("PG201", "error", 13), ("PG202", "error", 14)]
    assert "`(ctx * 31 + tgt)`" in findings[0].message


def test_shift_or_and_reversed_sum_keys_are_the_same_hash() -> None:
    for key in ("(ctx << 8) | tgt", "tgt + ctx * 131", "(ctx << 16) + tgt", "hash((ctx, tgt)) % buckets"):
        code = POLY_PAIR_BLEND.replace("(ctx * 31 + tgt) % buckets", key)
        assert _loud(_scoring(code))[:1] == [("PG201", "error", 13)], key


def test_polynomial_key_of_context_tokens_only_is_legal() -> None:
    code = POLY_PAIR_BLEND.replace("pair = (ctx * 31 + tgt) % buckets", "pair = (ctx * 31 + ids[i - 1]) % buckets")
    code = code.replace(
        "p_ng = pair_counts[pair] / (ctx_counts[ctx] + 1.0)", "p_ng = pair_counts[pair] / pair_counts.sum()"
    )
    assert _loud(_scoring(code)) == []


PAIR_UPDATE_AFTER_SCORING = """\
import numpy as np


def eval_then_count(logp, ids, n, vocab):
    pair_counts = {}
    nll_sum = 0.0
    flat = logp.reshape(-1)
    for i in range(n):
        tgt = ids[i + 1]
        nll_sum -= float(flat[i * vocab + tgt])
    for i in range(n):
        ctx, tgt = ids[i], ids[i + 1]
        key = ctx * 31 + tgt
        pair_counts[key] = pair_counts.get(key, 0) + 1
        pair_counts[(ctx, tgt)] = pair_counts.get((ctx, tgt), 0) + 1
    return nll_sum
"""


def test_flat_index_selection_and_causal_pair_updates_are_legal() -> None:
    assert _loud(_scoring(PAIR_UPDATE_AFTER_SCORING)) == []


def test_tuple_key_bound_to_a_name_is_a_count_read_at_the_target() -> None:
    code = POLY_PAIR_BLEND.replace("pair = (ctx * 31 + tgt) % buckets", "pair = (ctx, tgt)")
    code = code.replace("np.zeros(buckets, dtype=np.uint32)", "{}").replace(
        "pair_counts[pair] /", "pair_counts.get(pair, 0) /"
    )
    # an exact (ctx, tgt) counter is the #1026 C2 shape: PG202, as for ``counts[ctx, tgt]``
    assert _loud(_scoring(code)) == [("PG202", "error", 14)]


# ---- 8. PG201: SLOT optimized in a helper module (#1229) ------------------------------------

SLOT_HELPER_MODULE = """\
import torch
import torch.nn.functional as F


def fit_window(model, hidden, targets, mask, steps, lr):
    delta = torch.zeros(hidden.size(0), 1, hidden.size(-1), requires_grad=True)
    opt = torch.optim.AdamW([delta], lr=lr)
    for _ in range(steps):
        logits = model.head(hidden + delta)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(mask)
        opt.zero_grad()
        ((nll * mask).sum() / mask.sum()).backward()
        opt.step()
    return delta.detach()
"""
SLOT_CALLER = """\
import torch
import torch.nn.functional as F
IMPORT


def eval_windows(model, windows, steps, lr):
    loss_sum = 0.0
    for chunk in windows:
        x, y = chunk[:-1][None], chunk[1:][None]
        with torch.no_grad():
            h = model.hidden(x)
        mask = torch.ones_like(y, dtype=torch.float32)
        delta = CALL(model, h, y, mask, steps, lr)
        with torch.no_grad():
            nll = F.cross_entropy(model.head(h + delta).flatten(0, 1), y.flatten(), reduction="none")
            loss_sum += float(nll.sum())
    return loss_sum
"""


def _scoring_files(files: dict[str, str]) -> list[Finding]:
    sources = [
        SourceFile(display_name=name, path=HERE / name, text=textwrap.dedent(text), is_entry=name == "train_gpt.py")
        for name, text in files.items()
    ]
    submission = Submission(root=HERE, name="case", sources=sources, settings={})
    return rules_scoring.check(CheckContext(submission=submission, parsed=[parse_source(s) for s in sources]))


def test_slot_helper_imported_from_another_module_is_pg201_at_the_call() -> None:
    for imported, call in (
        ("from window_fit import fit_window", "fit_window"),
        ("from window_fit import fit_window as fw", "fw"),
        ("import window_fit", "window_fit.fit_window"),
        ("import window_fit as wf", "wf.fit_window"),
    ):
        caller = SLOT_CALLER.replace("IMPORT", imported).replace("CALL", call)
        findings = _scoring_files({"train_gpt.py": caller, "window_fit.py": SLOT_HELPER_MODULE})
        assert [(f.rule, f.severity.value, f.file, f.line) for f in findings] == [
            ("PG201", "error", "train_gpt.py", 13)
        ], imported
        assert [(s.file, s.line) for s in findings[0].path][0] == ("window_fit.py", 5)


def test_helper_of_another_module_that_never_reads_the_targets_is_legal() -> None:
    helper = SLOT_HELPER_MODULE.replace("targets.flatten()", "logits.flatten(0, 1).argmax(-1)")
    caller = SLOT_CALLER.replace("IMPORT", "from window_fit import fit_window").replace("CALL", "fit_window")
    assert _scoring_files({"train_gpt.py": caller, "window_fit.py": helper}) == []


def test_same_named_function_in_a_module_not_imported_is_not_resolved() -> None:
    caller = SLOT_CALLER.replace("IMPORT", "from other_fit import fit_window").replace("CALL", "fit_window")
    assert _scoring_files({"train_gpt.py": caller, "window_fit.py": SLOT_HELPER_MODULE}) == []


# ---- 9. PG201: the target hashed into an input embedding of the model's forward ------------

PAIR_EMBED_FORWARD = """\
import torch
import torch.nn.functional as F
from torch import nn


class PairModel(nn.Module):
    def __init__(self, vocab, dim, buckets):
        super().__init__()
        self.buckets = buckets
        self.tok_emb = nn.Embedding(vocab, dim)
        self.pair_emb = nn.Embedding(buckets, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids, target_ids):
        prev = F.pad(input_ids[:, :-1], (1, 0))
        pair = ((prev * 36313) ^ (target_ids * 27191)) % self.buckets
        x = self.tok_emb(input_ids) + self.pair_emb(pair)
        logits = self.head(x)
        return F.cross_entropy(logits.flatten(0, 1), target_ids.flatten())
"""


def test_target_hashed_into_an_input_embedding_is_pg201() -> None:
    findings = _scoring(PAIR_EMBED_FORWARD)
    assert _loud(findings) == [("PG201", "error", 16)]
    assert "target_ids" in findings[0].message


def test_target_hashed_into_f_embedding_with_a_weak_target_name_is_pg201() -> None:
    code = PAIR_EMBED_FORWARD.replace("target_ids", "y").replace(
        "self.pair_emb(pair)", "F.embedding(pair, self.pair_emb.weight)"
    )
    assert _loud(_scoring(code)) == [("PG201", "error", 16)]


def test_polynomial_pair_key_into_an_input_embedding_is_pg201() -> None:
    code = PAIR_EMBED_FORWARD.replace("((prev * 36313) ^ (target_ids * 27191))", "(prev * 131 + target_ids)")
    assert _loud(_scoring(code)) == [("PG201", "error", 16)]


def test_bigram_hash_of_input_tokens_beside_the_target_is_legal() -> None:
    code = PAIR_EMBED_FORWARD.replace("(target_ids * 27191)", "(input_ids * 27191)")
    assert _loud(_scoring(code)) == []


# ---- 10. PG201: a tilt table updated with the target before that position is scored (C3) ---

TILT_UPDATE_ORDER = """\
import numpy as np
import torch.nn.functional as F


def eval_tilt(logits, toks, beta, mask):
    hint = np.full(mask + 1, -1)
    seen = np.zeros(mask + 1)
    loss_sum = 0.0
    for i in range(len(toks) - 1):
        p = i + 1
        ctx = (toks[p - 1] * 1000003) & mask
        row = logits[i]
        hint[ctx] = toks[p]
        seen[ctx] += 1
        guess = int(hint[ctx])
        if guess >= 0:
            row = row.clone()
            row[guess] += beta
        logp = F.log_softmax(row, dim=-1)
        loss_sum -= float(logp[toks[p]])
    return loss_sum
"""


def test_table_written_with_the_target_then_read_before_scoring_is_pg201() -> None:
    findings = _scoring(TILT_UPDATE_ORDER)
    assert _loud(findings) == [("PG201", "error", 13)]
    assert [s.line for s in findings[0].path] == [13, 15, 20]


def test_same_update_after_the_score_is_legal() -> None:
    moved = TILT_UPDATE_ORDER.replace("        hint[ctx] = toks[p]\n        seen[ctx] += 1\n", "").replace(
        "        loss_sum -= float(logp[toks[p]])\n",
        "        loss_sum -= float(logp[toks[p]])\n        hint[ctx] = toks[p]\n        seen[ctx] += 1\n",
    )
    assert _loud(_scoring(moved)) == []


def test_per_position_output_written_before_the_sum_is_not_a_cache() -> None:
    code = """\
import torch.nn.functional as F


def eval_rows(logits, toks, picked):
    loss_sum = 0.0
    for i in range(len(toks) - 1):
        p = i + 1
        picked[p] = toks[p]
        tok = picked[p]
        loss_sum -= float(F.log_softmax(logits[i], dim=-1)[toks[p]])
    return loss_sum, tok
"""
    assert _loud(_scoring(code)) == []


# ---- 11. PG201: a within-word gate on the target inside a helper class's scorer (#1420) ----

HELPER_TILT = """\
import numpy as np


def lse(r):
    m = r.max()
    return m + np.log(np.exp(r - m).sum())


class Tilt:
    def __init__(self, is_bnd, cont_w):
        self.is_bnd = is_bnd
        self.cont_w = cont_w

    def nll_at(self, row, tokens, p):
        r = row.astype(np.float64).copy()
        if not self.is_bnd[tokens[p]]:
            r[~self.is_bnd] += self.cont_w
        nll = -(r - lse(r))[tokens[p]]
        return nll
"""


def test_target_gate_in_a_helper_whose_score_is_returned_is_pg201() -> None:
    findings = _scoring(HELPER_TILT)
    assert _loud(findings) == [("PG201", "error", 16)]
    assert "is_bnd[tokens[p]]" in findings[0].message


def test_gate_on_the_previous_token_in_the_same_helper_is_legal() -> None:
    code = HELPER_TILT.replace("if not self.is_bnd[tokens[p]]:", "if not self.is_bnd[tokens[p - 1]]:")
    assert _loud(_scoring(code)) == []


# ---- 12. PG204: leading-space byte always added, with minified LUT parameters (issue #897) --

MINIFIED_BYTES = """\
import torch


def ev(m,V,bb,ls,bd):
 B=0;l=0.
 for s in range(0,V.numel()-1,64):
  x=V[s:s+64];y=V[s+1:s+65];l+=float(m(x,y))
  B+=int((bb[y].int()+ls[y].int()).sum())
 return l,B


def main(model, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut):
    return ev(model, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut)
"""


def test_minified_leading_space_lut_added_for_every_token_is_pg204() -> None:
    findings = _scoring(MINIFIED_BYTES)
    assert _loud(findings) == [("PG204", "error", 8)]
    assert "ls[y]" in findings[0].message


def test_minified_leading_space_lut_with_the_boundary_parameter_is_legal() -> None:
    code = MINIFIED_BYTES.replace("ls[y].int()", "(ls[y]&~bd[x]).int()")
    assert _loud(_scoring(code)) == []


def test_one_letter_parameters_without_lut_arguments_are_not_byte_tables() -> None:
    code = MINIFIED_BYTES.replace(
        "ev(model, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut)",
        "ev(model, val_tokens, widths, offsets, flags)",
    )
    assert _loud(_scoring(code)) == []


# ---- 13. PG204: a CaseOps byte sidecar counts only when it is read in the run (#2138) --------

CASEOPS_SWITCHED_SIDECAR = """\
import math
import os

import numpy as np
import torch
from lossless_caps import decode_caseops


class Config:
    byte_sidecar = bool(int(os.environ.get("BYTE_SIDECAR", "0")))
    val_bytes_files = os.path.join("./data", "fineweb_val_bytes_*.bin")


def load_byte_sidecar(pattern):
    return torch.from_numpy(np.fromfile(pattern, dtype=np.uint16).astype(np.int64))


def eval_val(cfg, model, sp, val_tokens):
    sidecar = load_byte_sidecar(cfg.val_bytes_files) if cfg.byte_sidecar else None
    nll_sum, byte_count = 0.0, 0
    for s in range(val_tokens.numel() // 1024):
        x, y = val_tokens[s * 1024 : (s + 1) * 1024], val_tokens[s * 1024 + 1 : (s + 1) * 1024 + 1]
        nll_sum += float(model(x, y)) * y.numel()
        if sidecar is not None:
            byte_count += int(sidecar[s * 1024 + 1 : (s + 1) * 1024 + 1].sum())
        else:
            byte_count += len(decode_caseops(sp.decode(y.tolist())).encode("utf-8"))
    return nll_sum / math.log(2.0) / byte_count


if __name__ == "__main__":
    print(f"final_exact val_bpb:{eval_val(Config(), torch.load('m.pt'), None, torch.load('v.pt')):.8f}")
"""


def test_a_caseops_sidecar_switched_off_in_the_run_leaves_transformed_bytes() -> None:
    off = [f for f in _loud(_scoring(CASEOPS_SWITCHED_SIDECAR)) if f[0] == "PG204"]
    assert off == [("PG204", "error", 6)]  # reported at the case-transform import
    on = _scoring(CASEOPS_SWITCHED_SIDECAR, _setting("BYTE_SIDECAR", "1"))
    assert not [f for f in _loud(on) if f[0] == "PG204"]


# ---- 14. PG204: a running sum of a per-token table is a byte count, whatever its name --------

MINIFIED_TABLE_BYTES = """\
import math

import numpy as np
import torch


def eval_val(h, m, vt, lut):
    n = 0.0;b = 0.0
    with torch.inference_mode():
        for s in range(0, vt.numel() - h.L - 1, h.L):w = vt[s : s + h.L + 1];n += m(w[:-1][None], w[1:][None]).item() * h.L;b += {increment}
    return n / max(1, (vt.numel() - 1)), n / b / math.log(2.)


def main(h, m, vt):
    lut = torch.from_numpy(np.load("base_bytes_lut.npy"))
    vl, vb = eval_val(h, m, vt, lut)
    print(f"final_int8_zlib_roundtrip_exact val_loss:{vl:.8f} val_bpb:{vb:.8f}")
"""


def test_a_minified_byte_total_from_a_lookup_table_divides_the_bits() -> None:
    table = MINIFIED_TABLE_BYTES.replace("{increment}", "lut[w[1:]].sum().item()")
    assert not [f for f in _loud(_scoring(table)) if f[0] == "PG204"]
    tokens = MINIFIED_TABLE_BYTES.replace("{increment}", "w[1:].numel()")  # bits per token
    assert ("PG204", "error", 11) in _loud(_scoring(tokens))


# ---- 15. PG302: the budget of a loop that stops through a `stop_after_step` flag -------------

FLAGGED_STOP = CALIBRATION_AFTER_LOOP.replace(
    """    began = time.perf_counter()
    step = 0
    while step < cfg.steps:
        xb, yb = stream.next_batch(393216, 1024)
        model(xb, yb).backward()
        opt.step()
        opt.zero_grad()
        step += 1
        if time.perf_counter() - began >= cfg.max_wallclock_seconds:
            break""",
    """    train_budget_ms = 1000.0 * cfg.max_wallclock_seconds
    began = time.perf_counter()
    stop_after_step = None
    step = 0
    while True:
        if stop_after_step is not None and step >= stop_after_step:
            break
        xb, yb = stream.next_batch(393216, 1024)
        model(xb, yb).backward()
        opt.step()
        opt.zero_grad()
        step += 1
        approx_ms = 1000.0 * (time.perf_counter() - began)
        if stop_after_step is None and approx_ms >= train_budget_ms:
            stop_after_step = step""",
)


def test_a_budget_read_beside_a_stop_flag_is_found_whatever_it_is_called() -> None:
    assert FLAGGED_STOP != CALIBRATION_AFTER_LOOP
    assert _runtime_io(FLAGGED_STOP, _setting("MAX_WALLCLOCK_SECONDS", "588")) == []
    assert [f.rule for f in _runtime_io(FLAGGED_STOP, _setting("MAX_WALLCLOCK_SECONDS", "600"))] == ["PG302"]


# ---- 16. PG204: three slots of one list of running totals (phased evaluations) ---------------

LIST_TOTALS = """\
import math

import torch
import torch.nn.functional as F


def token_bytes(prev_ids, tgt_ids, luts):
    base, lead, bnd = luts
    return base[tgt_ids].double() + (lead[tgt_ids] & ~bnd[prev_ids]).double()


def score(model, x, y, luts):
    with torch.no_grad():
        nll = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none")
    return nll.double().sum(), nll.numel(), token_bytes(x.flatten(), y.flatten(), luts).sum()


def eval_val(model, batches, luts):
    tot = [torch.zeros((), dtype=torch.float64) for _ in range(3)]
    for x, y in batches:
        ls, tc, bc = score(model, x, y, luts)
        tot[0] += ls
        tot[1] += tc
        tot[2] += bc
    val_loss = (tot[0] / tot[1]).item()
    return val_loss, val_loss / math.log(2.0) * (tot[1].item() / tot[2].item())


def main(model, batches, luts):
    val_loss, val_bpb = eval_val(model, batches, luts)
    print(f"final_sliding_window_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""


def test_byte_total_kept_in_a_slot_of_a_list_of_totals_divides_the_bits() -> None:
    assert not [f for f in _loud(_scoring(LIST_TOTALS)) if f[0] == "PG204"]
