"""Mechanism rules (PG201, PG202, PG204) on shapes a reading of the wild corpus set found
misjudged (#12): byte tables in tools the entry never runs, LUT padding, one-line minified
bodies, target metadata, Laplace denominators, window bounds named after the target, progress
prints in the training loop, and the shipped ``meta.npz`` byte table of the Scylla lineage.

Each shape is a minimal program written for this test, citing the pull request it comes
from; lines are found by a ``# <-`` marker (helpers shared with ``test_mech_corpus_shapes``).
"""

from __future__ import annotations

from harness.findings import Severity
from tests.test_mech_corpus_shapes import _line, _loud, _scoring

# ---- wild-set false errors: byte tables and target metadata ------------------------------------

PIECE_LENGTH_TOOL = """\
import sentencepiece as spm


def main(model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    short = []
    for tid in range(sp.vocab_size()):
        if len(sp.id_to_piece(tid).encode("utf-8")) == 1:  # <- length
            short.append(tid)
    print(f"{len(short)} one-byte pieces")
"""

ENTRY_ONLY = """\
import torch


def main():
    print("train")
"""


def test_piece_lengths_in_a_script_the_entry_never_imports_are_a_warning() -> None:
    """#1578: a tokenizer-building tool in the folder measures piece lengths; the entry script
    never imports it, so it cannot be the score's denominator by itself — a warning, not an error."""
    found = _loud(_scoring({"train_gpt.py": ENTRY_ONLY, "tools/prune_vocab.py": PIECE_LENGTH_TOOL}), "PG204")
    assert found == [("PG204", Severity.WARNING, _line(PIECE_LENGTH_TOOL, "length"))]


def test_the_same_table_in_the_entry_script_is_an_error() -> None:
    found = _loud(_scoring({"train_gpt.py": PIECE_LENGTH_TOOL}), "PG204")
    assert found == [("PG204", Severity.ERROR, _line(PIECE_LENGTH_TOOL, "length"))]


def test_one_line_minified_byte_count_with_the_boundary_rule_is_quiet() -> None:
    """#1111: a minified one-line body (``def f(...): a; b; c``) holds ``tb += space[y] & ~bnd[x]``;
    the boundary test sits in the same small statement."""
    code = (
        "import torch\n"
        "def acc(ptl,x,y,base_bytes_lut,has_leading_space_lut,is_boundary_token_lut,out):"
        "tb=base_bytes_lut[y].double();tb+=has_leading_space_lut[y]&~is_boundary_token_lut[x];"
        "out[0]+=ptl.sum();out[1]+=tb.sum()\n"
    )
    assert _loud(_scoring({"train_gpt.py": code}), "PG204") == []


def test_one_line_minified_byte_count_without_the_boundary_rule_is_pg204() -> None:
    code = (
        "import torch\n"
        "def acc(ptl,x,y,base_bytes_lut,has_leading_space_lut,is_boundary_token_lut,out):"
        "tb=base_bytes_lut[y].double();tb+=has_leading_space_lut[y];"
        "out[0]+=ptl.sum();out[1]+=tb.sum()\n"
    )
    assert _loud(_scoring({"train_gpt.py": code}), "PG204") == [("PG204", Severity.ERROR, 2)]


def test_space_table_padding_and_word_start_features_are_not_byte_counts() -> None:
    """#1289: ``lut.shape[0]`` and ``padded[: lut.shape[0]] = lut`` copy the table; #1252: a
    word-start flag looked up for the model's attention is a feature, not a byte count."""
    code = """\
    import numpy as np
    import torch


    def pad_luts(base_bytes_np, has_leading_space_np, size):
        padded_base = np.zeros(size, np.int16)
        padded_space = np.zeros(size, np.bool_)
        padded_base[: base_bytes_np.shape[0]] = base_bytes_np
        padded_space[: has_leading_space_np.shape[0]] = has_leading_space_np
        return padded_base, padded_space


    def word_starts(input_ids, has_leading_space_lut):
        is_word_start = has_leading_space_lut[input_ids]
        is_word_start[:, 0] = True
        return is_word_start.long().cumsum(dim=1) - 1
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG204") == []


def test_target_shape_and_device_in_a_mask_are_not_a_target_gate() -> None:
    """#1283: ``torch.ones(targets.size(0), 1, device=targets.device)`` reads the batch size
    and device of the targets, not their values; a gate built from it is not target-gated.
    The twin reading the values (``targets == hint``) still is."""
    code = """\
    import torch
    import torch.nn.functional as F


    def mixer_loss(logits, targets, alpha_raw, expert_valid, hint):
        full_mask = torch.cat([torch.ones(targets.size(0), 1, device=targets.device, dtype=torch.bool), expert_valid], 1)
        gate = alpha_raw.masked_fill(~full_mask, -1e9)
        weights = F.softmax(gate, dim=-1)
        p = F.softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
        return -(weights[:, 0] * p).log().sum()
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG201") == []
    leaky = code.replace(
        "        gate = alpha_raw.masked_fill(~full_mask, -1e9)\n",
        "        gate = alpha_raw.masked_fill(~full_mask, -1e9) * (targets == hint)[:, None]  # <- gate\n",
    )
    assert ("PG201", Severity.ERROR, _line(leaky, "gate")) in _loud(_scoring({"train_gpt.py": leaky}), "PG201")


def test_lidstone_smoothed_row_is_normalized_but_a_context_count_is_not() -> None:
    """#1453: ``(count[ctx, y] + a) / (row_total[ctx] + a * V)`` sums to 1 over the vocabulary
    (one pseudo-count per entry); ``count / (ctx_count + beta)`` (#972) does not."""
    code = """\
    import torch


    class TriCache:
        def __init__(self, buckets, vocab_size):
            self.V = vocab_size
            self.tri_counts = torch.zeros(buckets, vocab_size)
            self.row_totals = torch.zeros(buckets)

        def score(self, ctx, y_batch):
            tri_count = self.tri_counts[ctx, y_batch]
            tri_total = self.row_totals[ctx]
            tri_nll = -((tri_count + 0.01) / (tri_total + 0.01 * self.V)).log()  # <- ratio
            return tri_nll.sum()
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG202") == []
    unnormalized = code.replace("(tri_total + 0.01 * self.V)", "(tri_total + 0.5)")
    assert _loud(_scoring({"train_gpt.py": unnormalized}), "PG202") == [
        ("PG202", Severity.ERROR, _line(unnormalized, "ratio"))
    ]


def test_a_laplace_denominator_bound_to_a_name_first_is_normalized() -> None:
    """#804: ``denom = total + s * V`` then ``(count[y] + s) / max(denom, eps)``."""
    code = """\
    class Unigram:
        def __init__(self, vocab_size, smoothing):
            self.vocab_size, self.smoothing, self.total_seen, self.unigram_counts = vocab_size, smoothing, 0, {}

        def prob(self, target):
            denom = self.total_seen + self.smoothing * self.vocab_size
            p = (self.unigram_counts.get(int(target), 0) + self.smoothing) / max(denom, 1e-12)
            return float(p)


    def score(model, uni, ys):
        import math

        nll_sum = 0.0
        for y in ys:
            nll_sum -= math.log(uni.prob(y))
        return nll_sum
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG202") == []


def test_a_vocabulary_mass_bound_to_a_name_before_the_loop_is_normalized() -> None:
    """#2121: ``smooth_mass = smooth * vocab_size`` once, then ``(count + smooth) / (total +
    smooth_mass)`` per position is the Lidstone row over the vocabulary; the same loop with a
    mass that is not per vocabulary entry (``smooth * 4``) still is a context-count ratio."""
    code = """\
    import math

    import numpy as np


    def prior_nll(tokens, vocab_size, smooth):
        smooth_mass = smooth * vocab_size
        counts = {}
        row_totals = np.zeros(vocab_size)
        out = np.zeros(len(tokens))
        for p in range(1, len(tokens)):
            prev, target = int(tokens[p - 1]), int(tokens[p])
            bigram_count = counts.get((prev, target), 0)
            p_bigram = (bigram_count + smooth) / (row_totals[prev] + smooth_mass)  # <- ratio
            out[p] = -math.log(p_bigram)
            counts[(prev, target)] = bigram_count + 1
            row_totals[prev] += 1
        return out
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG202") == []
    unnormalized = code.replace("smooth_mass = smooth * vocab_size", "smooth_mass = smooth * 4")
    assert _loud(_scoring({"train_gpt.py": unnormalized}), "PG202") == [
        ("PG202", Severity.ERROR, _line(unnormalized, "ratio"))
    ]


def test_window_bounds_named_after_the_target_are_positions() -> None:
    """#2147: ``target_lo``/``target_hi`` bound the slice of a precomputed hint table copied
    for a window; they are positions, not the target token, so the copied gate is not a
    target gate. A gate indexed by the target token itself still is."""
    code = """\
    import numpy as np
    import torch
    import torch.nn.functional as F


    def eval_tilt(model, val_tokens, hint_np, gate_np, batch_ws, seq_len):
        loss_sum = 0.0
        gate_block = np.zeros(len(batch_ws) * seq_len, dtype=bool)
        for i, ws in enumerate(batch_ws):
            target_lo, target_hi = ws + 1, ws + 1 + seq_len
            gate_block[i * seq_len : (i + 1) * seq_len] = gate_np[target_lo:target_hi]
        x = torch.stack([val_tokens[ws : ws + seq_len] for ws in batch_ws])
        y = torch.stack([val_tokens[ws + 1 : ws + seq_len + 1] for ws in batch_ws])
        logits = model.forward_logits(x).float()
        loss_sum += float(F.cross_entropy(logits.transpose(1, 2), y, reduction="sum"))
        return loss_sum
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG201") == []


def test_bits_per_token_progress_line_inside_the_training_loop_is_quiet() -> None:
    """#1465: a cheap periodic ``val_bpb`` print inside the training loop divides by ln 2 only;
    the reported score is computed elsewhere. The same formula after training is PG204."""
    code = """\
    import math

    import torch


    def train(model, opt, batches, val_tokens, seq_len):
        for step, (xb, yb) in enumerate(batches):
            model(xb, yb).backward()
            opt.step()
            if step % 500 == 0:
                with torch.no_grad():
                    vl = float(model(val_tokens[:seq_len][None], val_tokens[1 : seq_len + 1][None]))
                vbpb = vl / math.log(2.0)
                print(f"step:{step} val_bpb:{vbpb:.4f}")


    def final(model, val_tokens, seq_len):
        with torch.no_grad():
            val_loss = float(model(val_tokens[:seq_len][None], val_tokens[1 : seq_len + 1][None]))
        val_bpb = val_loss / math.log(2.0)  # <- final
        return val_bpb
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG204") == [("PG204", Severity.ERROR, _line(code, "final"))]


SHIPPED_TABLE = """\
import numpy as np
import sentencepiece as spm
import torch


def build_luts(sp, n):
    base = np.zeros(n, np.int16)
    for tid in range(n):
        if sp.is_byte(tid):
            base[tid] = 1
        else:
            base[tid] = len(sp.id_to_piece(tid).replace("\\u2581", "").encode("utf-8"))
    return base


def load_luts(meta_path, tokenizer_path, n, validate):
    with np.load(meta_path) as data:
        base_bytes = np.asarray(data["base_bytes"], np.int16)  # <- load
        has_leading_space = np.asarray(data["has_leading_space"], bool)
    if validate:
        if not np.array_equal(base_bytes, build_luts(spm.SentencePieceProcessor(model_file=tokenizer_path), n)):
            raise ValueError("tokenizer metadata mismatch")
    return torch.from_numpy(base_bytes), torch.from_numpy(has_leading_space)
"""


def test_byte_table_read_from_a_shipped_file_is_pg204() -> None:
    """#1184 (Scylla, removed as invalid after #1271): the per-token byte table comes from a
    ``meta.npz`` shipped beside the code, checked against the tokenizer only behind a switch."""
    found = _loud(_scoring({"train_gpt.py": SHIPPED_TABLE}), "PG204")
    assert found == [("PG204", Severity.ERROR, _line(SHIPPED_TABLE, "load"))]


def test_byte_table_always_checked_against_the_tokenizer_is_quiet() -> None:
    code = SHIPPED_TABLE.replace("    if validate:\n        if not", "    if not").replace(
        "            raise ValueError", "        raise ValueError"
    )
    assert _loud(_scoring({"train_gpt.py": code}), "PG204") == []


def test_negated_item_call_does_not_hang_the_min_nll_check() -> None:
    """#2089: ``nll = -loss.item()`` beside a ``min`` made the loss-name scan unwrap an
    argument-less call to itself forever (the audit timed out); it must finish and stay quiet."""
    code = """\
    def eval_val(model, batches, cap):
        total = 0.0
        for xb, yb in batches:
            nll = -model(xb, yb).item()
            lo = min(nll, cap)
            total += lo
        return total
    """
    assert _loud(_scoring({"train_gpt.py": code})) == []


def test_a_none_check_of_a_target_argument_is_not_a_target_gate() -> None:
    """#1922: ``if self.aux_head is not None and aux_targets is not None and w > 0:`` adds an
    auxiliary-head loss when the caller passed its targets; ``is not None`` reads no token.
    The twin testing the target values in the same branch is still a target gate."""
    code = """\
    import torch
    import torch.nn.functional as F


    class GPT(torch.nn.Module):
        def forward(self, input_ids, target_ids, aux_targets=None, aux_weight=0.0):
            h = self.body(input_ids)
            logits = self.head(h)
            targets = target_ids.reshape(-1)
            total_loss = F.cross_entropy(logits.float(), targets, reduction="mean")
            if self.aux_head is not None and aux_targets is not None and aux_weight > 0.0:  # <- aux
                aux_loss = F.cross_entropy(self.aux_head(h).float(), aux_targets.reshape(-1))
                total_loss = total_loss + aux_weight * aux_loss
            if self.reg_weight > 0.0:
                total_loss = total_loss + self.reg_weight * logits.float().pow(2).mean(-1)[0]
            return total_loss
    """
    assert _loud(_scoring({"train_gpt.py": code}), "PG201") == []
    leaky = code.replace("aux_targets is not None and aux_weight", "aux_targets.sum() > 0 and aux_weight")
    assert _loud(_scoring({"train_gpt.py": leaky}), "PG201") == [("PG201", Severity.ERROR, _line(leaky, "aux"))]
