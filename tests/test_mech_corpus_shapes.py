"""Mechanism rules (PG201, PG202, PG204) on shapes the labeled corpus showed misjudged (#12).

Each shape is a minimal program written for this test, after the pull request it comes
from: an n-gram lookup moved into a helper method the scoring loop calls (#982), the #659
min-NLL written as a comparison, a causal hint table built by a helper handed the whole
target stream (#2135, accepted), and the CaseOps raw-byte sidecar counted from decoded text
(#1729/#2138, accepted). Lines are found by a ``# <-`` marker so the programs stay readable.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import harness.check.rules_scoring as rules_scoring
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import SourceFile, Submission

HERE = Path(__file__).parent


def _scoring(files: dict[str, str]) -> list[Finding]:
    sources = [
        SourceFile(display_name=name, path=HERE / name, text=textwrap.dedent(text), is_entry=name == "train_gpt.py")
        for name, text in files.items()
    ]
    submission = Submission(root=HERE, name="case", sources=sources, settings={})
    return rules_scoring.check(CheckContext(submission=submission, parsed=[parse_source(s) for s in sources]))


def _line(code: str, marker: str) -> int:
    lines = textwrap.dedent(code).splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"# <- {marker}" in text)


def _loud(findings: list[Finding], prefix: str = "PG2") -> list[tuple[str, Severity, int]]:
    return [
        (f.rule, f.severity, f.line) for f in findings if f.rule.startswith(prefix) and f.severity is not Severity.INFO
    ]


# ---- #982: the target-keyed lookup sits in a helper method the scoring loop calls ------------

PACKED_CACHE = """\
import math

import numpy as np
import torch
import torch.nn.functional as F

PRIMES = np.array([36313, 27191, 51647, 81929], dtype=np.uint64)


class PackedCache:
    def __init__(self, buckets, order):
        self.mask = np.uint64(buckets - 1)
        self.order = order
        self.ctx_tables = {n: np.zeros(buckets, np.int32) for n in range(2, order + 1)}
        self.full_tables = {n: np.zeros(buckets, np.int32) for n in range(2, order + 1)}

    def match_positions(self, tokens_np, positions):
        toks = tokens_np.astype(np.uint64)
        out = np.zeros(len(positions))
        hit = np.zeros(len(positions), dtype=bool)
        tgt_all = toks[positions]
        for n in range(self.order, 1, -1):
            w = n - 1
            h = np.zeros(len(positions), dtype=np.uint64)
            for k in range(w):
                h ^= toks[positions - w + k] * PRIMES[k % 4]
            c = self.ctx_tables[n][(h & self.mask).astype(np.intp)].astype(np.float64)
            key = ((h ^ (tgt_all * PRIMES[w % 4])) & self.mask).astype(np.intp)  # <- key
            f = self.full_tables[n][key].astype(np.float64)
            ok = (f > 0) & ~hit
            out[ok] = np.minimum(f[ok], c[ok]) / np.maximum(c[ok], 1.0)  # <- ratio
            hit |= ok
        return out, hit


def eval_blend(model, val_tokens, cache, seq_len):
    tokens_np = val_tokens.numpy()
    loss_sum, count, total_bytes = 0.0, 0, 0.0
    with torch.inference_mode():
        for s in range(0, val_tokens.numel() - seq_len, seq_len):
            x = val_tokens[s : s + seq_len][None]
            y = val_tokens[s + 1 : s + seq_len + 1][None]
            probs = F.softmax(model.forward_logits(x).float(), dim=-1)
            p_model = probs.gather(-1, y[..., None]).squeeze(-1)[0].numpy()
            positions = np.arange(s + 1, s + seq_len + 1)
            p_ng, hit = cache.match_positions(tokens_np, positions)
            p = np.where(hit, 0.2 * p_model + 0.8 * p_ng, p_model)
            loss_sum -= float(np.log(np.maximum(p, 1e-10)).sum())
            count += seq_len
            total_bytes += seq_len * 1.0
    return loss_sum / count
"""


def test_target_keyed_lookup_in_a_called_helper_is_pg201_and_pg202() -> None:
    """#982: ``score_positions`` reads ``tokens[positions]`` (the targets) into the hash key
    and divides the hit count by a context count; the scoring loop only blends the result."""
    found = _loud(_scoring({"train_gpt.py": PACKED_CACHE}))
    assert ("PG201", Severity.ERROR, _line(PACKED_CACHE, "key")) in found
    assert ("PG202", Severity.ERROR, _line(PACKED_CACHE, "ratio")) in found


def test_context_keyed_helper_returning_a_normalized_row_is_quiet() -> None:
    """The legal twin: the helper hashes the context only and returns the whole next-token row
    divided by its sum; the caller mixes full distributions and picks the target last."""
    code = """\
    import numpy as np
    import torch
    import torch.nn.functional as F

    PRIMES = np.array([36313, 27191], dtype=np.uint64)


    class RowCache:
        def __init__(self, buckets, vocab):
            self.mask = np.uint64(buckets - 1)
            self.rows = np.ones((buckets, vocab), np.float32)

        def rows_for(self, tokens_np, positions):
            toks = tokens_np.astype(np.uint64)
            h = (toks[positions - 2] * PRIMES[0]) ^ (toks[positions - 1] * PRIMES[1])
            table = self.rows[(h & self.mask).astype(np.intp)]
            return table / table.sum(-1, keepdims=True)


    def eval_blend(model, val_tokens, cache, seq_len):
        tokens_np = val_tokens.numpy()
        loss_sum, count = 0.0, 0
        with torch.inference_mode():
            for s in range(2, val_tokens.numel() - seq_len, seq_len):
                x = val_tokens[s : s + seq_len][None]
                y = val_tokens[s + 1 : s + seq_len + 1][None]
                probs = F.softmax(model.forward_logits(x).float(), dim=-1)[0]
                rows = torch.from_numpy(cache.rows_for(tokens_np, np.arange(s + 1, s + seq_len + 1)))
                mix = 0.8 * probs + 0.2 * rows
                loss_sum -= float(mix.gather(-1, y[0][:, None]).log().sum())
                count += seq_len
        return loss_sum / count
    """
    assert _loud(_scoring({"train_gpt.py": code})) == []


# ---- #659: keep the lower NLL, written as a comparison ----------------------------------------

MIN_BY_COMPARISON = """\
import math

import torch
import torch.nn.functional as F


def eval_val_mix(model, val_tokens, cache, seq_len, lam):
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, val_tokens.numel() - seq_len, seq_len):
            x = val_tokens[s : s + seq_len][None]
            y = val_tokens[s + 1 : s + seq_len + 1][None]
            logits = model.forward_logits(x).float()
            scored_nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")[0].double()
            logp = F.log_softmax(logits[0], dim=-1)
            for t in range(seq_len):
                cache_lp = cache.logprob(x[0, : t + 1].tolist(), int(y[0, t]))
                if cache_lp is None:
                    continue
                a = math.log(1 - lam) + float(logp[t, y[0, t]])
                b = math.log(lam) + cache_lp
                mixed_nll = -(max(a, b) + math.log1p(math.exp(-abs(a - b))))
                old_nll = scored_nll[t].item()
                if mixed_nll < old_nll:  # <- choice
                    scored_nll[t] = mixed_nll
            loss_sum += float(scored_nll.sum())
            count += seq_len
    return loss_sum / count
"""


def test_keeping_the_lower_nll_through_a_comparison_is_pg202() -> None:
    """#659: ``if new_nll < old_nll: scored[t] = new_nll`` is ``min`` of two per-token losses."""
    found = _loud(_scoring({"train_gpt.py": MIN_BY_COMPARISON}))
    assert ("PG202", Severity.ERROR, _line(MIN_BY_COMPARISON, "choice")) in found


def test_conditional_expression_and_where_spellings_are_pg202() -> None:
    for spelling in (
        "nll = nll_mix if nll_mix < nll_lm else nll_lm",
        "nll = torch.where(nll_mix < nll_lm, nll_mix, nll_lm)",
    ):
        code = f"""\
        import torch
        import torch.nn.functional as F


        def eval_val_mix(model, cache, x, y):
            logits = model.forward_logits(x).float()
            nll_lm = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            nll_mix = -torch.log(0.7 * F.softmax(logits, -1).gather(-1, y[..., None]).squeeze(-1) + 0.3 * cache.p(x, y))
            {spelling}  # <- choice
            return nll.sum()
        """
        found = _loud(_scoring({"train_gpt.py": code}))
        assert ("PG202", Severity.ERROR, _line(code, "choice")) in found, spelling


def test_running_best_loss_and_unconditional_mixture_are_quiet() -> None:
    """Legal twins: a best-so-far validation loss is tracked over time, not chosen per token;
    the mixture itself, always used, is one distribution."""
    code = """\
    import math

    import torch
    import torch.nn.functional as F


    def eval_val_mix(model, val_tokens, seq_len, lam, cache):
        loss_sum, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, val_tokens.numel() - seq_len, seq_len):
                x = val_tokens[s : s + seq_len][None]
                y = val_tokens[s + 1 : s + seq_len + 1][None]
                probs = F.softmax(model.forward_logits(x).float(), dim=-1)
                rows = cache.rows(x)
                mix = (1 - lam) * probs + lam * rows / rows.sum(-1, keepdim=True)
                nll = -mix.gather(-1, y[..., None]).log()
                loss_sum += float(nll.sum())
                count += seq_len
        return loss_sum / count


    def train(model, opt, batches, val_tokens, lam, cache):
        best_val_nll = math.inf
        for xb, yb in batches:
            F.cross_entropy(model(xb).transpose(1, 2), yb).backward()
            opt.step()
            val_nll = eval_val_mix(model, val_tokens, 1024, lam, cache)
            if val_nll < best_val_nll:
                best_val_nll = val_nll
        return best_val_nll
    """
    assert _loud(_scoring({"train_gpt.py": code})) == []


# ---- #2135: a causal hint table built by a helper handed the target stream --------------------

TILT_ENTRY = """\
import numpy as np
import torch
import torch.nn.functional as F


def eval_tilted(model, all_tokens, seq_len, boost):
    from tilt_hints import hints_for_targets

    targets_np = all_tokens.numpy()[1:]
    pkg = hints_for_targets(targets_np, boost)
    hint_global = torch.from_numpy(pkg["hint"])
    gate_global = torch.from_numpy(pkg["gate"])
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, all_tokens.numel() - seq_len, seq_len):
            x = all_tokens[s : s + seq_len][None]
            y = all_tokens[s + 1 : s + seq_len + 1][None]
            logits = model.forward_logits(x).float()[0]
            hint = hint_global[s : s + seq_len]
            gate_w = gate_global[s : s + seq_len].float() * boost
            tilted = logits + gate_w[:, None] * F.one_hot(hint, logits.size(-1)).float()
            loss_sum += float(F.cross_entropy(tilted, y[0], reduction="sum"))
            count += seq_len
    return loss_sum / count
"""

CAUSAL_HINTS = """\
import numpy as np


def hints_for_targets(target_ids, boost):
    n = len(target_ids)
    hint = np.zeros(n, np.int64)
    gate = np.zeros(n, bool)
    table = {}
    for p in range(1, n):
        ctx = int(target_ids[p - 1])
        if ctx in table:
            hint[p], gate[p] = table[ctx], boost > 0
        table[ctx] = int(target_ids[p])
    return {"hint": hint, "gate": gate}
"""

LEAKY_HINTS = """\
import numpy as np

PRIME = 1000003


def hints_for_targets(target_ids, boost):
    n = len(target_ids)
    hint = np.zeros(n, np.int64)
    gate = np.zeros(n, bool)
    counts = np.zeros(1 << 16, np.int32)
    for p in range(1, n):
        key = (int(target_ids[p - 1]) * PRIME ^ int(target_ids[p]) * 7919) & 0xFFFF  # <- key
        gate[p] = counts[key] > 0
        hint[p] = int(target_ids[p - 1])
        counts[key] += 1
    return {"hint": hint, "gate": gate}
"""


def test_hints_from_a_causal_helper_handed_the_target_stream_are_quiet() -> None:
    """#2135 (accepted): the gate arrays come from a helper that reads each position's
    prefix only; handing it the target stream is not reading the target at the scored position."""
    assert _loud(_scoring({"train_gpt.py": TILT_ENTRY, "tilt_hints.py": CAUSAL_HINTS})) == []


def test_a_helper_that_hashes_the_target_into_its_key_is_still_pg201() -> None:
    """The illegal twin: the same call, but the helper hashes ``target_ids[p]`` into the key
    it reads for position p — the helper is analysed as part of the scoring path."""
    found = _loud(_scoring({"train_gpt.py": TILT_ENTRY, "tilt_hints.py": LEAKY_HINTS}))
    line = _line(LEAKY_HINTS, "key")
    assert [(rule, severity) for rule, severity, at in found if at == line] == [("PG201", Severity.ERROR)]


# ---- #1729/#2138: the CaseOps sidecar is counted from decoded text ----------------------------

SIDECAR_BUILDER = """\
import numpy as np

from reversible_text import decode_text


def original_byte_counts(sp, transformed_text):
    ids = sp.encode(transformed_text, out_type=int)
    pieces = [sp.id_to_piece(int(i)) for i in ids]
    counts = np.empty(len(ids), dtype=np.uint16)
    cursor_t, cursor_o = 0, 0
    for i, piece in enumerate(pieces):
        surface = piece.replace("\\u2581", " ")
        cursor_t += len(surface)
        try:
            prefix = decode_text(transformed_text[:cursor_t])
            n_bytes = len(prefix.encode("utf-8")) - cursor_o
            cursor_o += n_bytes
        except ValueError:
            n_bytes = len(surface.encode("utf-8"))
        counts[i] = n_bytes
    return counts
"""


def test_byte_sidecar_counted_from_decoded_text_is_quiet() -> None:
    """CaseOps (#1729, accepted; the raw sidecar #2138 asks for): each token's bytes are the
    growth of the *decoded* original text, which already maps byte-fallback pieces to one byte."""
    assert _loud(_scoring({"train_gpt.py": SIDECAR_BUILDER}), "PG204") == []


def test_piece_text_lengths_without_decoding_are_still_pg204() -> None:
    """The illegal twin (#1271 Scylla): the same walk counting each piece's own UTF-8 text."""
    code = SIDECAR_BUILDER.replace(
        "            prefix = decode_text(transformed_text[:cursor_t])\n"
        '            n_bytes = len(prefix.encode("utf-8")) - cursor_o\n',
        '            n_bytes = len(surface.encode("utf-8"))  # <- length\n',
    )
    found = _loud(_scoring({"train_gpt.py": code}), "PG204")
    assert found == [("PG204", Severity.ERROR, _line(code, "length"))]
