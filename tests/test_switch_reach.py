"""Switch reach (harness/check/switches/reach.py): a function that runs only because its
name is handed to another call (``timed_eval("ngram", eval_val_ngram, ...)``) runs under that
call's guards. Found reading wild-set `fail` verdicts for #12 (#2121: an eval-time bigram prior
behind ``NGRAM_MIX_ALPHA`` left at 0.0, passed by reference to a timing wrapper, was an error).

The program is a minimal reproduction written for this test; lines are found by a ``# <-`` marker.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import harness.check.rules_scoring as rules_scoring
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Severity
from harness.submission import Setting, SourceFile, Submission

HERE = Path(__file__).parent

PROGRAM = textwrap.dedent(
    """\
    import math
    import os

    import numpy as np
    import torch


    class Hyperparameters:
        mix_alpha = float(os.environ.get("MIX_ALPHA", "0.0"))
        vocab_size = 1024


    def bigram_prior(h, tokens):
        counts = {}
        totals = np.zeros(h.vocab_size)
        out = np.zeros(len(tokens))
        for p in range(1, len(tokens)):
            prev, target = int(tokens[p - 1]), int(tokens[p])
            c = counts.get((prev, target), 0)
            prob = c / max(totals[prev], 1.0)  # <- ratio
            out[p] = -math.log(max(prob, 1e-9))
            counts[(prev, target)] = c + 1
            totals[prev] += 1
        return out


    def eval_val_ngram(h, val_tokens):
        return bigram_prior(h, val_tokens).sum()


    def timed_eval(label, fn, *args):
        value = fn(*args)
        print(f"{label} val_bpb:{value:.4f}")
        return value


    def main():
        h = Hyperparameters()
        val_tokens = torch.load("fineweb_val_000000.bin")
        if float(getattr(h, "mix_alpha", 0.0)) > 0.0:
            timed_eval("ngram", eval_val_ngram, h, val_tokens)


    if __name__ == "__main__":
        main()
    """
)


def _pg202(code: str, settings: dict[str, Setting]) -> list[tuple[str, Severity, int]]:
    source = SourceFile(display_name="train_gpt.py", path=HERE / "train_gpt.py", text=code, is_entry=True)
    submission = Submission(root=HERE, name="case", sources=[source], settings=settings)
    findings = rules_scoring.check(CheckContext(submission=submission, parsed=[parse_source(source)]))
    return [(f.rule, f.severity, f.line) for f in findings if f.rule == "PG202"]


def _line(code: str, marker: str) -> int:
    return next(i for i, text in enumerate(code.splitlines(), 1) if f"# <- {marker}" in text)


def test_a_function_passed_by_name_under_an_off_switch_is_off() -> None:
    """#2121: the only way the prior runs is as an argument of ``timed_eval`` inside
    ``if ... mix_alpha > 0.0``; MIX_ALPHA defaults to 0.0 and nothing sets it."""
    assert _pg202(PROGRAM, {}) == [("PG202", Severity.INFO, _line(PROGRAM, "ratio"))]


def test_the_same_function_passed_by_name_with_the_switch_on_is_an_error() -> None:
    settings = {"MIX_ALPHA": Setting("MIX_ALPHA", "0.3", "run.sh", 3, "script")}
    assert _pg202(PROGRAM, settings) == [("PG202", Severity.ERROR, _line(PROGRAM, "ratio"))]


def test_a_function_passed_by_name_outside_any_switch_is_an_error() -> None:
    unguarded = PROGRAM.replace(
        '    if float(getattr(h, "mix_alpha", 0.0)) > 0.0:\n        timed_eval(',
        "    timed_eval(",
    )
    assert unguarded != PROGRAM
    assert _pg202(unguarded, {}) == [("PG202", Severity.ERROR, _line(unguarded, "ratio"))]
