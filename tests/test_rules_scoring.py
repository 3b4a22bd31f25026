"""PG201–PG204: each illegal fixture raises exactly its rule at the expected line, each legal
fixture stays quiet, and documented settings decide whether env-switched code counts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import harness.check.rules_scoring as rules_scoring
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.check.switches import UNKNOWN
from harness.check.switches.reach import Configuration
from harness.check.tree.index import index_module
from harness.findings import Finding, Severity
from harness.submission import Setting, SourceFile, Submission

MECH = Path(__file__).parent / "fixtures" / "mech"


def _context(files: dict[str, str], settings: dict[str, Setting] | None = None) -> CheckContext:
    sources = [
        SourceFile(display_name=name, path=MECH / name, text=text, is_entry=name.startswith("train_gpt.py"))
        for name, text in files.items()
    ]
    submission = Submission(root=MECH, name="case", sources=sources, settings=settings or {})
    return CheckContext(submission=submission, parsed=[parse_source(s) for s in sources])


def _scoring(files: dict[str, str], settings: dict[str, Setting] | None = None) -> list[Finding]:
    return rules_scoring.check(_context(files, settings))


def _fixture(relative: str) -> dict[str, str]:
    return {"train_gpt.py": (MECH / relative).read_text(encoding="utf-8")}


def _summary(findings: list[Finding]) -> list[tuple[str, str, str, int]]:
    return [(f.rule, f.severity.value, f.file, f.line) for f in findings]


def _readme(name: str, value: str, line: int = 14) -> dict[str, Setting]:
    return {name: Setting(name=name, value=value, file="README.md", line=line, source_kind="readme")}


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("illegal/PG201_hash_key_target.py", [("PG201", "error", "train_gpt.py", 38)]),
        (
            "illegal/PG201_target_gate.py",
            [("PG201", "error", "train_gpt.py", 11), ("PG201", "error", "train_gpt.py", 29)],
        ),
        ("illegal/PG201_min_hash_key_loop.py", [("PG201", "error", "train_gpt.py", 14)]),
        ("illegal/PG201_slot.py", [("PG201", "error", "train_gpt.py", 36)]),
        ("illegal/PG201_slot_helper.py", [("PG201", "error", "train_gpt.py", 15)]),
        ("illegal/PG201_word_gate_minified.py", [("PG201", "error", "train_gpt.py", 3)]),
        ("illegal/PG201_within_branch_minified.py", [("PG201", "error", "train_gpt.py", 10)]),
        ("illegal/PG201_doc_statistics.py", [("PG201", "error", "train_gpt.py", 13)]),
        ("illegal/PG201_doc_statistics_minified.py", [("PG201", "error", "train_gpt.py", 7)]),
        ("illegal/PG202_target_only_blend.py", [("PG202", "error", "train_gpt.py", 24)]),
        ("illegal/PG202_target_only_blend_minified.py", [("PG202", "error", "train_gpt.py", 9)]),
        ("illegal/PG202_dict_blend_minified.py", [("PG202", "error", "train_gpt.py", 9)]),
        ("illegal/PG202_min_nll.py", [("PG202", "error", "train_gpt.py", 20)]),
        ("illegal/PG202_min_nll_minified.py", [("PG202", "error", "train_gpt.py", 12)]),
        ("illegal/PG202_min_nll_stacked.py", [("PG202", "error", "train_gpt.py", 10)]),
        ("illegal/PG202_cache_hit_weight.py", [("PG202", "error", "train_gpt.py", 20)]),
        (
            "illegal/PG202_byte_ppm.py",
            [("PG202", "error", "train_gpt.py", 12), ("PG202", "error", "train_gpt.py", 13)],
        ),
        ("illegal/PG203_smear_varlen.py", [("PG203", "warning", "train_gpt.py", 17)]),
        ("illegal/PG203_smear_roll_minified.py", [("PG203", "warning", "train_gpt.py", 9)]),
        ("illegal/PG204_fixed_bytes_per_token.py", [("PG204", "error", "train_gpt.py", 22)]),
        ("illegal/PG204_token_denominator_minified.py", [("PG204", "error", "train_gpt.py", 8)]),
        ("illegal/PG204_fixed_ratio_minified.py", [("PG204", "error", "train_gpt.py", 8)]),
        ("illegal/PG204_float_return_minified.py", [("PG204", "error", "train_gpt.py", 8)]),
        ("illegal/PG204_bytes_per_token_hparam.py", [("PG204", "error", "train_gpt.py", 14)]),
        ("illegal/PG204_byte_fallback_lut.py", [("PG204", "error", "train_gpt.py", 15)]),
        ("illegal/PG204_token_denominator.py", [("PG204", "error", "train_gpt.py", 18)]),
    ],
)
def test_illegal_fixture_raises_exactly_its_rule(fixture: str, expected: list[tuple[str, str, str, int]]) -> None:
    assert _summary(_scoring(_fixture(fixture))) == expected


@pytest.mark.parametrize("fixture", sorted(p.name for p in (MECH / "legal").glob("*.py")))
def test_legal_fixture_raises_nothing_loud(fixture: str) -> None:
    loud = [f for f in _scoring(_fixture(f"legal/{fixture}")) if f.severity is not Severity.INFO]
    assert loud == []


def test_plain_causal_smear_is_only_noted() -> None:
    findings = _scoring(_fixture("legal/smear_plain_causal.py"))
    assert _summary(findings) == [("PG203", "info", "train_gpt.py", 17)]
    assert "does not otherwise isolate documents" in findings[0].message


def test_messages_carry_evidence_paths() -> None:
    (key,) = _scoring(_fixture("illegal/PG201_hash_key_target.py"))
    assert [step.line for step in key.path] == [38, 39]
    assert "tgt" in key.message
    (slot,) = _scoring(_fixture("illegal/PG201_slot.py"))
    assert [step.line for step in slot.path] == [27, 36, 40]
    assert "delta, logit_bias" in slot.message


def test_switched_gate_is_info_by_default_and_error_when_readme_enables_it() -> None:
    files = _fixture("switched/PG201_word_gate_off.py")
    (off,) = _scoring(files)
    assert (off.rule, off.severity, off.line) == ("PG201", Severity.INFO, 32)
    assert "WORD_BOOST defaults to '0'" in off.message
    setting, gate = _scoring(files, _readme("WORD_BOOST", "0.5"))
    assert (setting.rule, setting.severity, setting.line) == ("PG201", Severity.ERROR, 14)
    assert "`word_boost` = 0.5 (WORD_BOOST=0.5 in README.md:14)" in setting.message
    assert (gate.rule, gate.severity, gate.line) == ("PG201", Severity.ERROR, 32)
    assert gate.message.endswith("enabled by WORD_BOOST=0.5 in README.md:14")


def test_gate_multiplied_by_a_zero_weight_is_off() -> None:
    code = textwrap.dedent(
        """
        import os
        import numpy as np

        WITHIN_W = float(os.environ.get("WITHIN_W", "0"))

        def score(logits, tokens, is_within, start, end):
            nll = 0.0
            for p in range(start, end):
                within_gate = WITHIN_W * is_within[tokens[p]]
                row = logits[p] + within_gate * (tokens[p - 1] > 0)
                nll -= row[tokens[p]] - np.log(np.exp(row).sum())
            return nll
        """
    )
    (off,) = _scoring({"train_gpt.py": code})
    assert (off.rule, off.severity, off.line) == ("PG201", Severity.INFO, 10)
    (on,) = _scoring({"train_gpt.py": code}, _readme("WITHIN_W", "0.25"))
    assert (on.severity, on.message.endswith("enabled by WITHIN_W=0.25 in README.md:14")) == (Severity.ERROR, True)


def test_slot_with_zero_steps_in_the_logs_is_info() -> None:
    settings = {"SLOT_STEPS": Setting("SLOT_STEPS", "0", "train_seed1.log", 3, "log")}
    (finding,) = _scoring(_fixture("illegal/PG201_slot.py"), settings)
    assert (finding.rule, finding.severity) == ("PG201", Severity.INFO)
    assert "SLOT_STEPS=0 in train_seed1.log:3" in finding.message


def test_env_switch_through_call_site_guard() -> None:
    code = textwrap.dedent(
        """
        import os
        import torch

        NGRAM_ENABLED = os.environ.get("NGRAM_ENABLED", "0") == "1"

        def eval_val_min(model, cache, x, y):
            nll_model = model.nll(x, y)
            nll_cache = cache.nll(x, y)
            return torch.minimum(nll_model, nll_cache).sum()

        def main(model, cache, x, y):
            if NGRAM_ENABLED:
                print(eval_val_min(model, cache, x, y))
        """
    )
    (off,) = _scoring({"train_gpt.py": code})
    assert (off.rule, off.severity, off.line) == ("PG202", Severity.INFO, 10)
    (on,) = _scoring({"train_gpt.py": code}, _readme("NGRAM_ENABLED", "1", 7))
    assert (on.severity, on.message.endswith("enabled by NGRAM_ENABLED=1 in README.md:7")) == (Severity.ERROR, True)


def test_minified_hash_key_with_one_letter_names() -> None:
    code = (
        "import numpy as np\n"
        "def s(m,v,a,b,T,M):\n"
        " L=0.0;lg=m(v)\n"
        " for p in range(a,b):\n"
        "  t=int(v[p]);c=int(v[p-1])*1000003;k=(c^(t*2654435761))&M;h=T[k];L-=float(np.log(lg[p][t]+h))\n"
        " return L\n"
    )
    assert _summary(_scoring({"train_gpt.py[decoded#1]": code})) == [("PG201", "error", "train_gpt.py[decoded#1]", 5)]


def test_helper_module_finding_sits_in_the_helper() -> None:
    helper = (MECH / "illegal" / "PG202_min_nll.py").read_text(encoding="utf-8")
    entry = "from ngram_helper import eval_val_min\n\nprint(eval_val_min)\n"
    findings = _scoring({"train_gpt.py": entry, "ngram_helper.py": helper})
    assert _summary(findings) == [("PG202", "error", "ngram_helper.py", 20)]


def test_activation_named_y_with_gate_in_model_code_is_not_a_target() -> None:
    code = textwrap.dedent(
        """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Block(nn.Module):
            def forward(self, x, targets):
                y = self.attn(x)
                gate = torch.sigmoid(self.gate_proj(y))
                x = x + gate * y
                logits = self.head(x)
                return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        """
    )
    assert _scoring({"train_gpt.py": code}) == []


def test_caseops_without_sidecar_and_missing_boundary_rule() -> None:
    code = textwrap.dedent(
        """
        import math
        from lossless_caps import encode_caseops

        def count_bytes(tgt_ids, base_bytes_lut, has_leading_space_lut):
            nb = base_bytes_lut[tgt_ids]
            nb += has_leading_space_lut[tgt_ids]
            return nb.sum()

        def report(loss_sum, tok_count, byte_count):
            val_bpb = loss_sum / math.log(2) / tok_count * (tok_count / byte_count)
            return val_bpb
        """
    )
    assert _summary(_scoring({"train_gpt.py": code})) == [
        ("PG204", "error", "train_gpt.py", 3),
        ("PG204", "error", "train_gpt.py", 7),
    ]


def test_fixed_byte_total_literal() -> None:
    code = "import math\n\ndef bpb(loss_sum):\n    val_bpb = loss_sum / math.log(2) / 151_000_000\n    return val_bpb\n"
    (finding,) = _scoring({"train_gpt.py": code})
    assert (finding.rule, finding.line) == ("PG204", 4)
    assert "151_000_000" in finding.message


@pytest.mark.parametrize(
    ("line", "settings", "expected"),
    [
        ('X = bool(int(os.environ.get("FLAG", "0")))', {}, False),
        ('X = bool(int(os.environ.get("FLAG", "0")))', {"FLAG": "1"}, True),
        ('X = os.environ.get("FLAG", "0") == "1"', {"FLAG": "1"}, True),
        ('X = os.environ.get("FLAG", "False").lower() in ("1", "true")', {"FLAG": "True"}, True),
        ('X = int(os.getenv("STEPS", 8)) > 0', {}, True),
        ('X = int(os.environ.get("STEPS", "8")) > 0 and os.environ.get("OTHER") == "1"', {}, False),
        ('X = int(os.environ.get("STEPS", "8")) > 0 and os.environ.get("OTHER", BASE) == "1"', {}, UNKNOWN),
        ('X = _env_int("STEPS", 0)', {"STEPS": "3"}, 3),
        ('X = int(os.environ["STEPS"])', {}, UNKNOWN),
    ],
)
def test_configuration_evaluates_common_env_forms(line: str, settings: dict[str, str], expected: object) -> None:
    code = f"import os\ndef _env_int(name, default):\n    return int(os.environ.get(name, default))\n{line}\nY = X\n"
    ctx = _context({"train_gpt.py": code})
    index = index_module(ctx.parsed[0])
    documented = {k: Setting(k, v, "run.sh", 2, "script") for k, v in settings.items()}
    configuration = Configuration([index], documented)
    statement = ctx.parsed[0].module.body[-1].body[0]
    assert configuration.evaluate(statement.value).value == expected


def test_context_only_slot_is_a_warning() -> None:
    text = (
        (MECH / "illegal" / "PG201_slot.py")
        .read_text(encoding="utf-8")
        .replace("mask[:, s:] = 1.0", "mask[:, :s] = 1.0")
    )
    (finding,) = _scoring({"train_gpt.py": text})
    assert (finding.rule, finding.severity, finding.line) == ("PG201", Severity.WARNING, 36)
    assert "context-only SLOT" in finding.message


def test_zero_padded_shift_without_mask_is_flagged_in_a_varlen_model() -> None:
    code = textwrap.dedent(
        """
        import torch
        from flash_attn import flash_attn_varlen_func

        def smear(x, gate, cu_seqlens):
            prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
            return x + torch.sigmoid(gate) * prev
        """
    )
    assert _summary(_scoring({"train_gpt.py": code})) == [("PG203", "warning", "train_gpt.py", 6)]


@pytest.mark.parametrize(
    "code",
    [
        # best-so-far tracking, not a per-token minimum
        "def f(val_loss, best_val_loss):\n    best_val_loss = min(best_val_loss, val_loss)\n    return best_val_loss\n",
        # a byte ratio passed in from elsewhere: the formula cannot be judged here
        "import math\n\ndef f(val_loss, ratio):\n    val_bpb = val_loss / math.log(2) * ratio\n    return val_bpb\n",
        # an improvement over a published score is not a byte constant
        "def f(val_bpb):\n    bpb_gain = 1.2244 - val_bpb\n    return bpb_gain\n",
        # piece lengths for vocabulary statistics, not a byte table
        "def f(sp):\n    longest = 0\n    for i in range(sp.vocab_size()):\n"
        "        longest = max(longest, len(sp.id_to_piece(i).encode()))\n    return longest\n",
        # bytes counted from the UTF-8 encoding of the documents
        "import math\n\ndef f(docs, loss_sum):\n    total = sum(len(d.encode('utf-8')) for d in docs)\n"
        "    val_bpb = loss_sum / math.log(2) / total\n    return val_bpb\n",
        # shifted token ids feeding a hashed input embedding
        "import torch\n\ndef f(input_ids, emb, cu_seqlens):\n"
        "    prev = torch.cat([torch.zeros_like(input_ids[:, :1]), input_ids[:, :-1]], 1)\n"
        "    return emb((prev * 36313 + input_ids) % 4096)\n",
    ],
)
def test_legal_look_alikes_stay_quiet(code: str) -> None:
    assert _scoring({"train_gpt.py": code}) == []


def test_target_keyed_read_after_the_score_is_an_update() -> None:
    code = textwrap.dedent(
        """
        import math

        def score(probs, val_np, start, end, table, mask):
            nll_sum = 0.0
            for p in range(start, end):
                tgt = int(val_np[p])
                ctx = int(val_np[p - 1]) * 1000003
                nll_sum -= math.log(probs[p - start][tgt])
                key = (ctx ^ (tgt * 2654435761)) & mask
                if table[key] == 0:
                    table[key] = 1
            return nll_sum
        """
    )
    assert _scoring({"train_gpt.py": code}) == []


def test_minified_expert_gate_is_found_by_its_env_name_and_switched_off_by_it() -> None:
    files = _fixture("illegal/PG201_word_gate_minified.py")
    (finding,) = _scoring(files)
    assert (finding.rule, finding.line) == ("PG201", 3)
    assert "`wb` = 0.3" in finding.message
    assert _scoring(files, _readme("WORD_BOOST", "0")) == []


def test_a_gate_enabled_by_an_earlier_documented_run_command_is_not_off() -> None:
    ctx = _context(_fixture("switched/PG201_word_gate_off.py"), _readme("WORD_BOOST", "0", line=20))
    ctx.submission.alternative_settings = [_readme("WORD_BOOST", "0.5", line=9)]  # the reproduce command
    gate = next(f for f in rules_scoring.check(ctx) if f.line == 32)
    assert (gate.rule, gate.severity) == ("PG201", Severity.ERROR)
    assert gate.message.endswith("enabled by WORD_BOOST=0.5 in README.md:9")
