"""PG101–PG106 on shapes a precision pass found mis-judged (each written here, small):
per-chunk losses stored into a score buffer, #991 with the optimizer built by the caller, a
re-score logged inline as a diagnostic, Hessian hooks fed by the submission's own forward
method (#728), a warm-up whose `del` removes only its input tensors, and a fine-tuned copy
merged back before it is deleted (pre-quant TTT)."""

from __future__ import annotations

from harness.findings import Severity
from tests.test_rules_ttt import check_text

HEAD = """import copy
import math
import os

import torch
import torch.nn.functional as F


class Hyperparameters:
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    seq_len = int(os.environ.get("SEQ_LEN", 64))
    ttt_lr = float(os.environ.get("TTT_LR", 0.01))
    chunk = int(os.environ.get("TTT_CHUNK", 256))
    warmup_steps = int(os.environ.get("WARMUP_STEPS", 2))


def load_validation_tokens(pattern, seq_len):
    return torch.load(pattern)


def eval_val(args, model, val_tokens, base_bytes, has_space, is_boundary):
    loss_sum = torch.zeros((), dtype=torch.float64)
    tokens = 0
    byte_count = 0.0
    with torch.inference_mode():
        for start in range(0, val_tokens.numel() - 1 - args.seq_len, args.seq_len):
            x = val_tokens[start : start + args.seq_len][None]
            y = val_tokens[start + 1 : start + 1 + args.seq_len][None]
            loss_sum += model(x, y).double() * y.numel()
            tokens += y.numel()
            byte_count += float((base_bytes[y] + (has_space[y] & ~is_boundary[x])).sum())
    val_loss = (loss_sum / tokens).item()
    return val_loss, val_loss / math.log(2.0) * tokens / byte_count


def eval_val_score_first_ttt(args, model, optimizer, val_tokens, base_bytes, has_space, is_boundary):
    loss_sum = torch.zeros((), dtype=torch.float64)
    tokens = 0
    byte_count = 0.0
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    for ci in range(n_chunks):
        x = val_tokens[ci * args.chunk : (ci + 1) * args.chunk][None]
        y = val_tokens[ci * args.chunk + 1 : (ci + 1) * args.chunk + 1][None]
        with torch.inference_mode():
            loss_sum += model(x, y).double() * y.numel()
        tokens += y.numel()
        byte_count += float((base_bytes[y] + (has_space[y] & ~is_boundary[x])).sum())
        if ci < n_chunks - 1:
            loss = model(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    val_loss = (loss_sum / tokens).item()
    return val_loss, val_loss / math.log(2.0) * tokens / byte_count
"""

MAIN_START = """

def main():
    args = Hyperparameters()
    val_tokens = load_validation_tokens(args.val_files, args.seq_len)
    model = torch.load("final_model.pt")
    luts = torch.load("luts.pt")
"""

TAIL = """

if __name__ == "__main__":
    main()
"""

LORA_BUFFER = (
    """

def eval_val_ttt_lora(args, model, val_tokens, base_bytes, has_space, is_boundary):
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    chunk_nll = torch.zeros(n_chunks, dtype=torch.float64)
    chunk_bytes = torch.zeros(n_chunks, dtype=torch.float64)
    lora = torch.zeros(model.dim, requires_grad=True)
    opt = torch.optim.Adam([lora], lr=args.ttt_lr)
    for ci in range(n_chunks):
        x = val_tokens[ci * args.chunk : (ci + 1) * args.chunk][None]
        y = val_tokens[ci * args.chunk + 1 : (ci + 1) * args.chunk + 1][None]
        ptl = model.forward_ttt(x, y, lora)
        {store}
        chunk_bytes[ci] = (base_bytes[y] + (has_space[y] & ~is_boundary[x])).double().sum()
        if ci < n_chunks - 1:
            opt.zero_grad()
            ptl.mean().backward()
            opt.step()
        {late_store}
    val_loss = chunk_nll.sum().item() / (n_chunks * args.chunk)
    return val_loss, chunk_nll.sum().item() / math.log(2.0) / chunk_bytes.sum().item()
"""
    + MAIN_START
    + """    val_loss, val_bpb = eval_val_ttt_lora(args, model, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def _serious(text: str) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in check_text(HEAD + text) if f.severity is not Severity.INFO}


def _line_of(text: str, fragment: str) -> int:
    return (HEAD + text).splitlines().index(next(l for l in (HEAD + text).splitlines() if fragment in l)) + 1


def test_per_chunk_losses_stored_into_a_score_buffer_before_backward_are_score_first() -> None:
    store = "chunk_nll[ci] = ptl.detach().double().sum()"
    legal = LORA_BUFFER.replace("{store}", store).replace("{late_store}", "")
    assert _serious(legal) == set()
    # the loss of the chunk computed again after the step: trained on, then scored
    late = LORA_BUFFER.replace("{store}", "").replace(
        "{late_store}", "chunk_nll[ci] = model.forward_ttt(x, y, lora).detach().double().sum()"
    )
    assert ("PG101", _line_of(late, "ptl.mean().backward()")) in _serious(late)


def test_991_second_pass_with_the_callers_optimizer_is_a_rescore() -> None:
    text = (
        MAIN_START
        + """    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    s0_loss, s0_bpb = eval_val_score_first_ttt(args, model, optimizer, val_tokens, *luts)
    print(f"ttt_pass0 val_loss:{s0_loss:.8f} val_bpb:{s0_bpb:.8f}")
    s1_loss, s1_bpb = eval_val_score_first_ttt(args, model, optimizer, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{s1_loss:.8f} val_bpb:{s1_bpb:.8f}")
"""
        + TAIL
    )
    assert ("PG103", _line_of(text, "s1_loss, s1_bpb =")) in _serious(text)


def test_a_rescore_logged_inline_as_a_diagnostic_is_not_the_headline() -> None:
    first_pass = (
        MAIN_START
        + """    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    ttt_loss, ttt_bpb = eval_val_score_first_ttt(args, model, optimizer, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{ttt_loss:.8f} val_bpb:{ttt_bpb:.8f}")
"""
    )
    diagnostic = (
        first_pass
        + """    print("DIAGNOSTIC post_ttt val_loss:%.4f val_bpb:%.4f" % eval_val(args, model, val_tokens, *luts))
"""
        + TAIL
    )
    assert _serious(diagnostic) == set()
    headline = (
        first_pass
        + """    print("final_exact val_loss:%.4f val_bpb:%.4f" % eval_val(args, model, val_tokens, *luts))
"""
        + TAIL
    )
    assert ("PG103", _line_of(headline, "final_exact")) in _serious(headline)


HOOKED = (
    """

class GPT(torch.nn.Module):
    def __init__(self, dim, vocab):
        super().__init__()
        self.body = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward_logits(self, x):
        return self.head(self.body(x))


def second_moments(model, rows):
    stats = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            stats[name] = stats.get(name, 0) + x.T @ x
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for row in rows:
            model.forward_logits(row[None])
    for handle in handles:
        handle.remove()
    return stats


def quantize(state, stats):
    return {k: (v * 127).round().to(torch.int8) for k, v in state.items()}
"""
    + MAIN_START
    + """    rows = [val_tokens[i * args.seq_len : (i + 1) * args.seq_len] for i in range(8)]
    stats = second_moments(model, rows)
    torch.save(quantize(model.state_dict(), stats), "final_model.int8.ptz")
"""
    + TAIL
)


def test_hessian_hooks_fed_through_the_submissions_own_forward_method_calibrate_on_val() -> None:
    assert ("PG106", _line_of(HOOKED, "model.forward_logits(row[None])")) in _serious(HOOKED)


WARMUP = (
    """

def eval_val_sliding_ttt(args, model, val_tokens, base_bytes, has_space, is_boundary):
    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    for warm_step in range(args.warmup_steps):
        warm_chunk = val_tokens[warm_step * args.chunk : (warm_step + 1) * args.chunk + 1]
        xw, yw = warm_chunk[:-1][None], warm_chunk[1:][None]
        model(xw, yw).backward()
        optimizer.step()
        optimizer.zero_grad()
    {cleanup}
    return eval_val_score_first_ttt(args, model, optimizer, val_tokens, base_bytes, has_space, is_boundary)
"""
    + MAIN_START
    + """    val_loss, val_bpb = eval_val_sliding_ttt(args, model, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def test_a_warmup_that_deletes_only_its_inputs_leaves_the_trained_model_in_place() -> None:
    text = WARMUP.replace("{cleanup}", "del xw, yw, warm_chunk")
    found = _serious(text)
    assert ("PG101", _line_of(text, "model(xw, yw).backward()")) in found
    assert not any(rule == "PG104" for rule, _ in found)


def test_a_warmup_restored_from_a_saved_state_stays_a_warning() -> None:
    text = WARMUP.replace(
        "optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)\n",
        "optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)\n"
        "    saved = {k: v.clone() for k, v in model.state_dict().items()}\n",
    )
    text = text.replace("{cleanup}", "model.load_state_dict(saved)")
    assert ("PG104", _line_of(text, "model(xw, yw).backward()")) in _serious(text)


MERGED_COPY = (
    """

def soup_on_val(args, model, val_tokens):
    ft = copy.deepcopy(model)
    ft_opt = torch.optim.AdamW(ft.parameters(), lr=args.ttt_lr)
    for ci in range((val_tokens.numel() - 1) // args.chunk):
        x = val_tokens[ci * args.chunk : (ci + 1) * args.chunk][None]
        y = val_tokens[ci * args.chunk + 1 : (ci + 1) * args.chunk + 1][None]
        ft_opt.zero_grad()
        ft(x, y).backward()
        ft_opt.step()
    {merge}
    del ft, ft_opt
"""
    + MAIN_START
    + """    soup_on_val(args, model, val_tokens)
    torch.save(model.state_dict(), "final_model.pt")
    val_loss, val_bpb = eval_val(args, model, val_tokens, *luts)
    print(f"final_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def test_a_fine_tuned_copy_merged_back_before_its_deletion_is_pre_quant_ttt() -> None:
    merged = MERGED_COPY.replace(
        "{merge}",
        "model.load_state_dict({k: 0.5 * v + 0.5 * ft.state_dict()[k] for k, v in model.state_dict().items()})",
    )
    assert ("PG102", _line_of(merged, "ft(x, y).backward()")) in _serious(merged)
    thrown_away = MERGED_COPY.replace("{merge}", "")
    assert not any(rule in ("PG101", "PG102") for rule, _ in _serious(thrown_away))


def test_the_headline_printed_by_the_ttt_function_itself_makes_a_later_rescore_a_diagnostic() -> None:
    text = (
        """

def eval_and_report_ttt(args, model, optimizer, val_tokens, luts):
    val_loss, val_bpb = eval_val_score_first_ttt(args, model, optimizer, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
        + MAIN_START
        + """    base_loss, base_bpb = eval_val(args, model, val_tokens, *luts)
    print(f"int8_zlib_roundtrip val_loss:{base_loss:.4f} val_bpb:{base_bpb:.4f}")
    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    eval_and_report_ttt(args, model, optimizer, val_tokens, luts)
    post_loss, post_bpb = eval_val(args, model, val_tokens, *luts)
    print(f"DIAGNOSTIC post_ttt val_loss:{post_loss:.4f} val_bpb:{post_bpb:.4f}")
"""
        + TAIL
    )
    assert not any(rule == "PG103" for rule, _ in _serious(text))
    headline = text.replace("DIAGNOSTIC post_ttt", "final_exact")
    assert ("PG103", _line_of(headline, "post_loss, post_bpb =")) in _serious(headline)


LAST_EPOCH = (
    """

def eval_val_ttt_lora(args, model, val_tokens, base_bytes, has_space, is_boundary):
    loss_sum = torch.zeros((), dtype=torch.float64)
    byte_count = 0.0
    n_docs = (val_tokens.numel() - 1) // args.chunk
    for di in range(n_docs):
        x = val_tokens[di * args.chunk : (di + 1) * args.chunk][None]
        y = val_tokens[di * args.chunk + 1 : (di + 1) * args.chunk + 1][None]
        lora = torch.zeros(model.dim, requires_grad=True)
        opt = torch.optim.Adam([lora], lr=args.ttt_lr)
        for epoch in range(3):
            ptl = model.forward_ttt(x, y, lora)
            {keep}doc_nll = ptl.detach().double().sum()
            opt.zero_grad()
            ptl.mean().backward()
            opt.step()
        loss_sum += doc_nll
        byte_count += float((base_bytes[y] + (has_space[y] & ~is_boundary[x])).sum())
    return loss_sum.item() / math.log(2.0) / byte_count
"""
    + MAIN_START
    + """    val_bpb = eval_val_ttt_lora(args, model, val_tokens, *luts)
    print(f"legal_ttt_exact val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def test_a_loss_kept_from_the_last_epoch_and_accumulated_after_the_loop_is_a_last_pass_score() -> None:
    last = LAST_EPOCH.replace("{keep}", "")
    assert ("PG103", _line_of(last, "loss_sum += doc_nll")) in _serious(last)
    first = LAST_EPOCH.replace("{keep}", "if epoch == 0:\n                ")  # the first pass only
    assert not any(rule in ("PG101", "PG103") for rule, _ in _serious(first))


PATIENCE = (
    """

def train(args, model, train_stream, val_tokens, luts):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best_loss, bad_evals = float("inf"), 0
    for step in range(1000):
        chunk = train_stream.take(4096)
        loss = model(chunk[:-1][None], chunk[1:][None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            val_loss, val_bpb = eval_val(args, model, val_tokens, *luts)
            print(f"step:{step} val_loss:{val_loss:.4f}")
            if val_loss < best_loss:
                best_loss, bad_evals = val_loss, 0
            else:
                bad_evals += 1
            {stop}
"""
    + MAIN_START
    + """    train(args, model, torch.load("train_stream.pt"), val_tokens, luts)
    torch.save(model.state_dict(), "final_model.pt")
    val_loss, val_bpb = eval_val(args, model, val_tokens, *luts)
    print(f"final_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def test_early_stopping_through_a_patience_counter_selects_on_val() -> None:
    stopping = PATIENCE.replace("{stop}", "if bad_evals >= 3:\n                break")
    assert ("PG105", _line_of(stopping, "if bad_evals >= 3:")) in _serious(stopping)
    logging_only = PATIENCE.replace("{stop}", "print(f'best:{best_loss:.4f} stale:{bad_evals}')")
    assert not any(rule == "PG105" for rule, _ in _serious(logging_only))


NEXT_CHUNK = (
    """

def eval_val_ttt(args, model, val_tokens, base_bytes, has_space, is_boundary):
    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    loss_sum = torch.zeros((), dtype=torch.float64)
    tokens = 0
    byte_count = 0.0
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    for ci in range(n_chunks):
        chunk = val_tokens[ci * args.chunk : (ci + 1) * args.chunk + 1]
        x, y = chunk[:-1][None], chunk[1:][None]
        with torch.inference_mode():
            loss_sum += model(x, y).double() * y.numel()
        tokens += y.numel()
        byte_count += float((base_bytes[y] + (has_space[y] & ~is_boundary[x])).sum())
        if ci + 1 < n_chunks:
            trained = val_tokens[{start} : (ci + 2) * args.chunk + 1]
            chunk_loss = model(trained[:-1][None], trained[1:][None])
            optimizer.zero_grad()
            chunk_loss.backward()
            optimizer.step()
    val_loss = (loss_sum / tokens).item()
    return val_loss, val_loss / math.log(2.0) * tokens / byte_count
"""
    + MAIN_START
    + """    val_loss, val_bpb = eval_val_ttt(args, model, val_tokens, *luts)
    print(f"legal_ttt_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
"""
    + TAIL
)


def test_training_on_the_next_chunk_before_it_is_scored_is_train_then_score() -> None:
    ahead = NEXT_CHUNK.replace("{start}", "(ci + 1) * args.chunk")
    assert ("PG101", _line_of(ahead, "chunk_loss.backward()")) in _serious(ahead)
    scored = NEXT_CHUNK.replace("{start}", "ci * args.chunk").replace("(ci + 2) * args.chunk", "(ci + 1) * args.chunk")
    assert _serious(scored) == set()


def test_a_switch_on_in_the_reproduce_command_but_off_in_a_later_ablation_still_runs(tmp_path) -> None:
    import shutil

    from harness.check import rules_ttt
    from harness.check.context import CheckContext
    from harness.check.parse import parse_source
    from harness.loader import load_submission

    fixtures = __import__("pathlib").Path(__file__).parent / "fixtures" / "code" / "illegal"
    shutil.copy(fixtures / "PG102_env_switched.py", tmp_path / "train_gpt.py")
    (tmp_path / "README.md").write_text(
        "Reproduce:\n```bash\nPREQUANT_TTT_ENABLED=1 torchrun --nproc_per_node=8 train_gpt.py\n```\n"
        "Ablation without the TTT:\n```bash\nPREQUANT_TTT_ENABLED=0 torchrun --nproc_per_node=8 train_gpt.py\n```\n"
    )
    submission = load_submission(tmp_path)
    findings = rules_ttt.check(
        CheckContext(submission=submission, parsed=[parse_source(s) for s in submission.sources])
    )
    assert [(f.rule, f.severity, f.line) for f in findings] == [("PG102", Severity.ERROR, 40)]
    assert findings[0].message.endswith("— enabled by PREQUANT_TTT_ENABLED=1 in README.md:3")
