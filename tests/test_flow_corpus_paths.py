"""PG101–PG106 on path and configuration shapes from the wild set of issue #12, each rewritten
here as a small program: an evaluation-only branch that returns before the normal path (no
re-score across exclusive paths, #720-style ``TTT_ONLY``), hyperparameters read through one-line
env helpers (``_eb("TTT_LEGAL")``, #601-style), score-first TTT on the model before it is
serialized (pre-quant TTT whatever the order, #1027), ``deserialize`` not being an artifact
write, and a local ``x = x + …`` added to once in a forward not being a running score."""

from __future__ import annotations

from pathlib import Path

from harness.check import rules_ttt
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import Setting, SourceFile, Submission


def check_text(text: str, settings: dict[str, Setting] | None = None) -> list[Finding]:
    source = SourceFile(display_name="train_gpt.py", path=Path("train_gpt.py"), text=text, is_entry=True)
    submission = Submission(root=Path("."), name="example", sources=[source], single_file=True, settings=settings or {})
    return rules_ttt.check(CheckContext(submission=submission, parsed=[parse_source(source)]))


def _serious(findings: list[Finding]) -> set[tuple[str, str, int]]:
    return {(f.rule, f.severity.value, f.line) for f in findings if f.severity is not Severity.INFO}


def _line(text: str, fragment: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(text.splitlines(), 1) if fragment in line][nth]


HEAD = """import io
import math
import os
import zlib

import torch


def _ei(k, d): return int(os.environ.get(k, str(d)))
def _eb(k, d="0"): return bool(int(os.environ.get(k, d)))


class Hyperparameters:
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    chunk = _ei("TTT_CHUNK", 4096)
    ttt_legal = _eb("TTT_LEGAL")


def eval_val(model, val_tokens, n):
    loss_sum, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, val_tokens.numel() - n, n):
            loss_sum += model(val_tokens[s : s + n][None], val_tokens[s + 1 : s + n + 1][None]).item() * n
            count += n
    return loss_sum / count


def eval_score_first(args, model, val_tokens):
    loss_sum, count = 0.0, 0
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    for ci in range(n_chunks):
        x = val_tokens[ci * args.chunk : (ci + 1) * args.chunk][None]
        y = val_tokens[ci * args.chunk + 1 : (ci + 1) * args.chunk + 1][None]
        with torch.inference_mode():
            loss_sum += model(x, y).item() * y.numel()
            count += y.numel()
        if ci < n_chunks - 1:
            loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return loss_sum / count
"""

TAIL = """

if __name__ == "__main__":
    main()
"""


def test_720_an_evaluation_only_branch_that_returns_is_not_followed_by_the_normal_path() -> None:
    """``if TTT_ONLY: load, score-first TTT, return``; the normal path then scores the freshly
    trained model. The TTT branch's updates never precede the normal path's scoring."""
    text = (
        HEAD
        + """

def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = torch.load("final_model.pt", weights_only=False)
    if os.environ.get("TTT_ONLY", "0") == "1":
        print(f"legal_ttt_exact val_bpb:{eval_score_first(args, model, val_tokens) / math.log(2.0):.8f}")
        return
    model = torch.load("trained.pt", weights_only=False)
    print(f"final_exact val_bpb:{eval_val(model, val_tokens, 1024) / math.log(2.0):.8f}")
"""
        + TAIL
    )
    assert {r for r in _serious(check_text(text)) if r[0].startswith("PG1")} == set()
    # twin: without the return both run, and the plain pass re-scores the adapted model (#991)
    rescored = text.replace('        return\n    model = torch.load("trained.pt", weights_only=False)\n', "")
    assert ("PG103", "error", _line(rescored, "final_exact")) in _serious(check_text(rescored))


ONE_LINE_HELPER = (
    HEAD
    + """

def eval_val_sgd_ttt(args, model, val_tokens):
    if args.ttt_legal:
        return eval_score_first(args, model, val_tokens)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for s in range(0, val_tokens.numel() - 1025, 1024):
        model(val_tokens[s : s + 1024][None], val_tokens[s + 1 : s + 1025][None]).backward()
        opt.step()
    return eval_val(model, val_tokens, 1024)


def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = torch.load("final_model.pt", weights_only=False)
    print(f"final_exact val_bpb:{eval_val_sgd_ttt(args, model, val_tokens) / math.log(2.0):.8f}")
"""
    + TAIL
)


def test_601_a_switch_read_through_a_one_line_env_helper_follows_the_documented_setting() -> None:
    """``ttt_legal = _eb("TTT_LEGAL")``: with TTT_LEGAL=1 documented, the train-then-score branch
    after ``if args.ttt_legal: return …`` does not run; with it unset it does (PG101 error)."""
    backward = _line(ONE_LINE_HELPER, ".backward()", 1)
    legal_run = {"TTT_LEGAL": Setting("TTT_LEGAL", "1", "README.md", 3, "readme")}
    assert ("PG101", "error", backward) not in _serious(check_text(ONE_LINE_HELPER, settings=legal_run))
    assert ("PG101", "error", backward) in _serious(check_text(ONE_LINE_HELPER))


def test_1027_score_first_ttt_on_the_model_before_it_is_serialized_is_pre_quant_ttt() -> None:
    text = (
        HEAD
        + """

def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = torch.load("trained.pt", weights_only=False)
    eval_score_first(args, model, val_tokens)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with open("final_model.ptz", "wb") as f:
        f.write(zlib.compress(buf.getvalue()))
    print(f"final_exact val_bpb:{eval_val(model, val_tokens, 1024) / math.log(2.0):.8f}")
"""
        + TAIL
    )
    assert ("PG102", "error", _line(text, "loss.backward()")) in _serious(check_text(text))


def test_reading_the_artifact_back_is_no_artifact_write_after_score_first_ttt() -> None:
    """The legal order: the artifact is written, read back (``deserialize``), and score-first
    TTT runs on the read-back model; reading the artifact back again afterwards writes nothing."""
    text = (
        HEAD
        + """

def serialize(model):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return zlib.compress(buf.getvalue())


class GPTLike(torch.nn.Linear):
    def __init__(self):
        super().__init__(8, 8)


def deserialize(blob):
    return torch.load(io.BytesIO(zlib.decompress(blob)), weights_only=False)


def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = torch.load("trained.pt", weights_only=False)
    blob = serialize(model)
    model.load_state_dict(deserialize(blob))
    bpb = eval_score_first(args, model, val_tokens) / math.log(2.0)
    print(f"legal_ttt_exact val_bpb:{bpb:.8f}")
    baseline = GPTLike()
    baseline.load_state_dict(deserialize(blob))
    print(f"reloaded params:{sum(p.numel() for p in baseline.parameters())}")
"""
        + TAIL
    )
    assert {r for r in _serious(check_text(text)) if r[0].startswith("PG1")} == set()


def test_a_single_addition_to_a_local_in_a_forward_is_no_running_score() -> None:
    """``x = x + self.bigram(ids)`` once in ``forward_logits`` (outside any loop, ``x`` not started
    at zero) during score-first TTT with several epochs per scored chunk (#549 precedent)."""
    text = (
        HEAD.replace(
            "            loss = model(x, y)\n",
            "            for _ in range(3):\n                loss = model.forward_logits(x).mean()\n",
        )
        + """

class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(1024, 64)
        self.bigram = torch.nn.Embedding(1024, 64)
        self.head = torch.nn.Linear(64, 1024)

    def forward_logits(self, ids):
        x = self.emb(ids)
        x = x + self.bigram(ids)
        return self.head(x)


def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = GPT()
    print(f"legal_ttt_exact val_bpb:{eval_score_first(args, model, val_tokens) / math.log(2.0):.8f}")
"""
        + TAIL
    )
    text = text.replace(
        "            opt.zero_grad()\n            loss.backward()\n            opt.step()\n",
        "                opt.zero_grad()\n                loss.backward()\n                opt.step()\n",
    )
    assert {r for r in _serious(check_text(text)) if r[0].startswith("PG1")} == set()


CALIBRATOR = (
    HEAD
    + """

def calibrate_mix_weight(model, val_tokens, n):
    best, best_w = float("inf"), 0.5
    with torch.no_grad():
        for w in (0.3, 0.5, 0.7):
            nll = model(val_tokens[:n][None], val_tokens[1 : n + 1][None], mix=w).item()
            if nll < best:
                best, best_w = nll, w
    return best_w


def main():
    args = Hyperparameters()
    val_tokens = torch.load(args.val_files)
    model = torch.load("trained.pt", weights_only=False)
    {before}
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with open("final_model.ptz", "wb") as f:
        f.write(zlib.compress(buf.getvalue()))
    {after}
    print(f"final_exact val_bpb:{eval_val(model, val_tokens, 1024) / math.log(2.0):.8f}")
"""
    + TAIL
)


def test_933_a_calibration_call_after_the_artifact_is_written_is_no_quantization_calibration() -> None:
    """An evaluation-time calibrator (#933/#851 tune an n-gram mixing weight on val tokens after
    the model is saved) shapes no artifact; the same call before the write does (PG106, #728)."""
    call = "model.mix = calibrate_mix_weight(model, val_tokens, 4096)"
    after = CALIBRATOR.replace("{before}", "pass").replace("{after}", call)
    assert not any(rule == "PG106" for rule, _, _ in _serious(check_text(after)))
    before = CALIBRATOR.replace("{before}", call).replace("{after}", "pass")
    assert ("PG106", "error", _line(before, call)) in _serious(check_text(before))


SWITCHED_SPLIT = """import glob
import io
import os
import zlib

import numpy as np
import torch


class Hyperparameters:
    train_files = os.environ.get("TRAIN_FILES", "./data/fineweb_train_*.bin")
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    train_on_val = bool(int(os.environ.get("TRAIN_ON_VAL", "0")))


class Stream:
    def __init__(self, pattern):
        self.tokens = torch.from_numpy(np.fromfile(sorted(glob.glob(pattern))[0], dtype="<u2").astype(np.int64))

    def take(self, n):
        return self.tokens[:n]


class Loader:
    def __init__(self, pattern):
        self.stream = Stream(pattern)

    def next_batch(self, n):
        chunk = self.stream.take(n + 1)
        return chunk[:-1][None], chunk[1:][None]


def main():
    args = Hyperparameters()
    val_stream = Stream(args.val_files)
    print(f"val tokens:{val_stream.tokens.numel()}")
    pattern = args.val_files if args.train_on_val else args.train_files
    loader = Loader(pattern)
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(100):
        x, y = loader.next_batch(1024)
        model(x, y).backward()
        opt.step()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with open("final_model.ptz", "wb") as f:
        f.write(zlib.compress(buf.getvalue()))


if __name__ == "__main__":
    main()
"""


def test_181_a_split_chosen_by_a_switch_is_val_only_when_the_switch_is_on() -> None:
    """``pattern = args.val_files if args.train_on_val else args.train_files`` with TRAIN_ON_VAL
    off by default: the training loop's PG105 is informational, and an error once a documented
    run sets TRAIN_ON_VAL=1 — even though the shard stream was analysed on val data before."""
    backward = _line(SWITCHED_SPLIT, ".backward()")
    off = check_text(SWITCHED_SPLIT)
    assert ("PG105", "error", backward) not in _serious(off)
    assert any(f.rule == "PG105" and f.line == backward for f in off)
    on = {"TRAIN_ON_VAL": Setting("TRAIN_ON_VAL", "1", "README.md", 4, "readme")}
    assert ("PG105", "error", backward) in _serious(check_text(SWITCHED_SPLIT, settings=on))


def test_1239_a_split_parameter_left_at_its_default_keeps_the_loader_on_training_data() -> None:
    """``def batches(split="train"): Stream(TRAIN_FILES if split == "train" else VAL_FILES)``, a
    batch generator called without ``split``: the condition is read through the default, so the training loop's
    finding is informational and says the test is true on that path."""
    text = (
        SWITCHED_SPLIT.replace(
            """    pattern = args.val_files if args.train_on_val else args.train_files
    loader = Loader(pattern)
""",
            """    loader = batches(args)
""",
        )
        .replace("x, y = loader.next_batch(1024)", "x, y = next(loader)")
        .replace(
            """def main():""",
            """def batches(args, split="train"):
    stream = Stream(args.train_files if split == "train" else args.val_files)
    while True:
        chunk = stream.take(1025)
        yield chunk[:-1][None], chunk[1:][None]


def main():""",
        )
    )
    backward = _line(text, ".backward()")
    found = check_text(text)
    assert not any(line == backward for _, _, line in _serious(found))
    assert any(
        f.rule.startswith("PG10") and f.line == backward and "is true with the code defaults" in f.message
        for f in found
    )
