"""PG101–PG106 on the fixture programs: each illegal fixture raises exactly its rule(s) at the
expected lines, each legal idiom raises nothing at warning or error, switches follow the
documented configuration, and the rule catalog's examples behave as declared."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.check import rules_ttt
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import Setting, SourceFile, Submission

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "code"
RULES_DIR = ROOT / "rules"


def run_check(
    paths: list[Path],
    settings: dict[str, Setting] | None = None,
    display: dict[Path, str] | None = None,
    decoded: bool = False,
) -> list[Finding]:
    sources = [
        SourceFile(
            display_name=(display or {}).get(path, path.name),
            path=path,
            text=path.read_text(),
            is_entry=index == 0,
            decoded_depth=1 if decoded and index == 0 else 0,
        )
        for index, path in enumerate(paths)
    ]
    submission = Submission(root=paths[0].parent, name=paths[0].parent.name, sources=sources, settings=settings or {})
    ctx = CheckContext(submission=submission, parsed=[parse_source(s) for s in sources])
    return rules_ttt.check(ctx)


def check_text(text: str, name: str = "train_gpt.py") -> list[Finding]:
    source = SourceFile(display_name=name, path=Path(name), text=text, is_entry=True)
    submission = Submission(root=Path("."), name="example", sources=[source], single_file=True)
    return rules_ttt.check(CheckContext(submission=submission, parsed=[parse_source(source)]))


def serious(findings: list[Finding]) -> set[tuple[str, str, str, int]]:
    return {(f.rule, f.severity.value, f.file, f.line) for f in findings if f.severity is not Severity.INFO}


ILLEGAL = {
    "PG101_ttt_adapt.py": {("PG101", "error", "PG101_ttt_adapt.py", 54)},
    "PG101_minified.py": {("PG101", "error", "PG101_minified.py", 8)},
    "PG101_minified_lora_rescore.py": {("PG101", "error", "PG101_minified_lora_rescore.py", 16)},
    "PG101_adapt_then_rescore_chunk.py": {("PG101", "error", "PG101_adapt_then_rescore_chunk.py", 33)},
    "PG101_logged_loss_before_step.py": {("PG101", "error", "PG101_logged_loss_before_step.py", 39)},
    "PG102_prequant_ttt.py": {("PG102", "error", "PG102_prequant_ttt.py", 40)},
    "PG102_federated.py": {("PG102", "error", "PG102_federated.py", 43)},
    "PG103_last_epoch.py": {("PG103", "error", "PG103_last_epoch.py", 38)},
    "PG103_rescore.py": {("PG101", "error", "PG103_rescore.py", 43), ("PG103", "error", "PG103_rescore.py", 55)},
    "PG103_rescore_after_legal_ttt.py": {("PG103", "error", "PG103_rescore_after_legal_ttt.py", 92)},
    "PG103_rescore_after_ttt_minified.py": {
        ("PG101", "error", "PG103_rescore_after_ttt_minified.py", 19),
        ("PG103", "error", "PG103_rescore_after_ttt_minified.py", 27),
    },
    "PG104_warmup_on_val.py": {("PG104", "warning", "PG104_warmup_on_val.py", 74)},
    "PG105_val_train_loader.py": {("PG105", "error", "PG105_val_train_loader.py", 44)},
    "PG105_paid_prefix.py": {("PG105", "error", "PG105_paid_prefix.py", 35)},
    "PG105_checkpoint_select.py": {("PG105", "error", "PG105_checkpoint_select.py", 57)},
    "PG105_val_batches_mixed.py": {("PG105", "error", "PG105_val_batches_mixed.py", 36)},
    "PG105_early_stop_on_val.py": {("PG105", "error", "PG105_early_stop_on_val.py", 100)},
    "PG106_val_hessians.py": {("PG106", "error", "PG106_val_hessians.py", 59)},
    "PG106_val_activation_scales.py": {("PG106", "error", "PG106_val_activation_scales.py", 31)},
    "PG106_minified_lambda_hooks.py": {("PG106", "error", "PG106_minified_lambda_hooks.py", 10)},
    "PG106_val_captured_inputs.py": {("PG106", "error", "PG106_val_captured_inputs.py", 28)},
}


@pytest.mark.parametrize("name", sorted(ILLEGAL))
def test_illegal_fixture_raises_exactly_its_rules(name: str) -> None:
    assert serious(run_check([FIXTURES / "illegal" / name])) == ILLEGAL[name]


@pytest.mark.parametrize("path", sorted((FIXTURES / "legal").glob("*.py")), ids=lambda p: p.name)
def test_legal_fixture_raises_nothing(path: Path) -> None:
    assert serious(run_check([path])) == set()


def test_helper_module_variant_is_caught_in_the_helper() -> None:
    folder = FIXTURES / "illegal" / "PG101_helper"
    findings = run_check([folder / "train_gpt.py", folder / "ttt_helper.py"])
    assert serious(findings) == {("PG101", "error", "ttt_helper.py", 16)}
    (finding,) = findings
    assert finding.message == (
        "val_tokens is trained on (loss.backward() at line 16) before it is scored (eval_val(…) at train_gpt.py:40)"
    )
    assert [(s.file, s.line) for s in finding.path][:2] == [("train_gpt.py", 38), ("train_gpt.py", 20)]
    assert ("ttt_helper.py", 6, "enters run_ttt(tokens)") in [(s.file, s.line, s.note) for s in finding.path]


def test_pg101_message_and_evidence_path_run_source_to_sink() -> None:
    (finding,) = run_check([FIXTURES / "illegal" / "PG101_ttt_adapt.py"])
    assert finding.message == (
        "val_tokens is trained on (loss.backward() at line 54) before it is scored "
        "(eval_val_sliding(…) at PG101_ttt_adapt.py:93)"
    )
    steps = [(s.line, s.note) for s in finding.path]
    assert steps[0] == (90, "VAL source: args.val_files")
    assert (90, "val_tokens = load_validation_tokens(args.val_files, args.seq_len)") in steps
    assert (42, "enters ttt_adapt(val_tokens)") in steps
    assert (54, "sink: loss.backward()") in steps
    assert steps[-2] == (93, "scored after the update: eval_val_sliding(…)")


def test_env_switched_prequant_is_info_without_documented_setting() -> None:
    findings = run_check([FIXTURES / "illegal" / "PG102_env_switched.py"])
    assert [(f.rule, f.severity, f.line) for f in findings] == [("PG102", Severity.INFO, 40)]
    assert "not run in the documented configuration" in findings[0].message
    assert "`h.prequant_ttt_enabled` at PG102_env_switched.py:68 is false" in findings[0].message


def test_env_switched_prequant_is_error_when_readme_enables_it() -> None:
    settings = {"PREQUANT_TTT_ENABLED": Setting("PREQUANT_TTT_ENABLED", "1", "README.md", 14, "readme")}
    findings = run_check([FIXTURES / "illegal" / "PG102_env_switched.py"], settings=settings)
    assert [(f.rule, f.severity, f.line) for f in findings] == [("PG102", Severity.ERROR, 40)]
    assert findings[0].message.endswith("— enabled by PREQUANT_TTT_ENABLED=1 in README.md:14")


def test_documented_setting_can_also_switch_code_off() -> None:
    text = (FIXTURES / "illegal" / "PG101_ttt_adapt.py").read_text()
    text = text.replace(
        '    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))\n',
        '    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))\n'
        '    ttt_enabled = os.environ.get("TTT_ENABLED", "1").lower() in ("1", "true")\n',
    ).replace(
        "    ttt_adapt(args, model, val_tokens, rank, world_size)\n",
        "    if args.ttt_enabled and args.ttt_epochs > 0:\n        ttt_adapt(args, model, val_tokens, rank, world_size)\n",
    )
    path = Path("/tmp") / "pg_switch_off_fixture.py"
    path.write_text(text)
    on = run_check([path])
    off = run_check([path], settings={"TTT_ENABLED": Setting("TTT_ENABLED", "0", "run.sh", 3, "script")})
    no_epochs = run_check([path], settings={"TTT_EPOCHS": Setting("TTT_EPOCHS", "0", "train_seed42.log", 9, "log")})
    assert [(f.rule, f.severity, f.line) for f in on] == [("PG101", Severity.ERROR, 55)]
    assert [(f.rule, f.severity, f.line) for f in off] == [("PG101", Severity.INFO, 55)]
    assert "with TTT_ENABLED=0 in run.sh:3" in off[0].message
    assert [(f.rule, f.severity) for f in no_epochs] == [("PG101", Severity.INFO)]
    assert "TTT_EPOCHS=0 in train_seed42.log:9" in no_epochs[0].message


def test_findings_in_decoded_shim_code_name_the_decoded_source() -> None:
    path = FIXTURES / "illegal" / "PG102_prequant_ttt.py"
    findings = run_check([path], display={path: "train_gpt.py[decoded#1]"}, decoded=True)
    assert serious(findings) == {("PG102", "error", "train_gpt.py[decoded#1]", 40)}
    assert findings[0].message.endswith("(lines of the source decoded from the self-extracting shim)")


def test_function_never_called_is_reported_as_info_only() -> None:
    text = (
        (FIXTURES / "illegal" / "PG101_ttt_adapt.py")
        .read_text()
        .replace("    ttt_adapt(args, model, val_tokens, rank, world_size)\n", "")
    )
    findings = check_text(text)
    assert [(f.rule, f.severity.value, f.line) for f in findings] == [("PG101", "info", 54)]
    assert findings[0].message.endswith("— in ttt_adapt, which the entry script never calls")


def test_rule_family_never_imports_torch() -> None:
    code = "import sys, harness.check.rules_ttt; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


CATALOG = sorted(RULES_DIR.glob("PG10[1-6].toml"))


def test_catalog_has_all_six_rules() -> None:
    assert [p.stem for p in CATALOG] == list(rules_ttt.RULES)


@pytest.mark.parametrize("path", CATALOG, ids=lambda p: p.stem)
def test_catalog_examples_behave_as_declared(path: Path) -> None:
    entry = tomllib.loads(path.read_text())
    assert entry["id"] == path.stem
    kinds = sorted(example["kind"] for example in entry["examples"])
    assert kinds == ["illegal", "legal"]
    for example in entry["examples"]:
        findings = check_text(example["code"], example["file"])
        raised = {(f.rule, f.severity.value) for f in findings if f.severity is not Severity.INFO}
        if example["kind"] == "illegal":
            assert raised == {(entry["id"], entry["severity"])}, example["title"]
        else:
            assert raised == set(), example["title"]


def test_throw_away_adapter_is_a_warning_even_without_warm_up_names() -> None:
    """#1530's warm-up has no "warm" in any name: the deleted fresh adapter is what proves the
    state is discarded; without the ``del`` the same code is an error."""
    text = (
        (FIXTURES / "illegal" / "PG104_warmup_on_val.py").read_text().replace("warmup_ttt_kernels", "prepare_kernels")
    )
    assert serious([*check_text(text)]) == {("PG104", "warning", "train_gpt.py", 74)}
    kept = text.replace("    del wl, wo\n", "")
    assert serious(check_text(kept)) == {("PG101", "error", "train_gpt.py", 74)}


def test_deleting_a_fresh_model_after_scoring_it_does_not_hide_train_then_score() -> None:
    text = (
        (FIXTURES / "illegal" / "PG101_ttt_adapt.py")
        .read_text()
        .replace(
            "    ttt_adapt(args, model, val_tokens, rank, world_size)\n",
            "    ttt_model = TinyGPT(args)\n    ttt_model.load_state_dict(model.state_dict())\n"
            "    ttt_adapt(args, ttt_model, val_tokens, rank, world_size)\n",
        )
        .replace(
            "    val_bpb = eval_val_sliding(args, model, val_tokens, base_bytes_lut)\n",
            "    val_bpb = eval_val_sliding(args, ttt_model, val_tokens, base_bytes_lut)\n    del ttt_model\n",
        )
    )
    assert serious(check_text(text)) == {("PG101", "error", "train_gpt.py", 54)}


def test_training_after_the_last_score_is_info_and_before_any_score_a_warning() -> None:
    after = check_text(
        "import torch\n"
        "def main(model, val_tokens):\n"
        "    loss_sum = 0.0\n"
        "    with torch.no_grad():\n"
        "        loss_sum += model(val_tokens).item()\n"
        "    print(f'final_exact val_bpb:{loss_sum}')\n"
        "    model(val_tokens).backward()\n"
        "main(1, 2)\n"
    )
    assert [(f.rule, f.severity.value, f.line) for f in after] == [("PG104", "info", 7)]
    alone = check_text("def main(model, val_tokens):\n    model(val_tokens).backward()\nmain(1, 2)\n")
    assert [(f.rule, f.severity.value, f.line) for f in alone] == [("PG104", "warning", 2)]
    assert (
        alone[0].message == "val_tokens is trained on (model(val_tokens).backward() at line 2) outside any scoring loop"
    )


def test_switch_passed_as_an_argument_is_evaluated_in_the_callers_terms() -> None:
    text = (
        (FIXTURES / "illegal" / "PG102_env_switched.py")
        .read_text()
        .replace(
            "    if h.prequant_ttt_enabled:\n        prequant_ttt_adapt_adamw(h, base_model, device, val_data.val_tokens)\n",
            "    maybe_adapt(h, base_model, device, val_data, run_it=h.prequant_ttt_enabled)\n",
        )
        .replace(
            "def gptq_quantize_weights(",
            "def maybe_adapt(h, base_model, device, val_data, run_it):\n"
            "    if run_it:\n"
            "        prequant_ttt_adapt_adamw(h, base_model, device, val_data.val_tokens)\n\n\n"
            "def gptq_quantize_weights(",
        )
    )
    path = Path("/tmp") / "pg_switch_argument_fixture.py"
    path.write_text(text)
    off = run_check([path])
    on = run_check(
        [path], settings={"PREQUANT_TTT_ENABLED": Setting("PREQUANT_TTT_ENABLED", "1", "README.md", 9, "readme")}
    )
    assert [(f.rule, f.severity) for f in off] == [("PG102", Severity.INFO)]
    assert "`run_it` at pg_switch_argument_fixture.py:" in off[0].message
    assert [(f.rule, f.severity) for f in on] == [("PG102", Severity.ERROR)]
    assert on[0].message.endswith("— enabled by PREQUANT_TTT_ENABLED=1 in README.md:9")


def test_logged_hyperparameter_dump_true_false_switches_like_the_env_value_behind_it() -> None:
    """A log dumps ``prequant_ttt_enabled: True`` — the converted attribute, not the env string
    ``1``; ``bool(int("True"))`` must not make the switch unknown (#1735-style pre-quant TTT
    turned on only by the run that produced the log)."""
    fixture = FIXTURES / "illegal" / "PG102_env_switched.py"
    logged_on = {"PREQUANT_TTT_ENABLED": Setting("PREQUANT_TTT_ENABLED", "True", "train_seed42.log", 2, "log")}
    on = run_check([fixture], settings=logged_on)
    assert [(f.rule, f.severity, f.line) for f in on] == [("PG102", Severity.ERROR, 40)]
    assert on[0].message.endswith("— enabled by PREQUANT_TTT_ENABLED=True in train_seed42.log:2")
    default_on = Path("/tmp") / "pg_logged_false_fixture.py"
    default_on.write_text(fixture.read_text().replace('"PREQUANT_TTT_ENABLED", "0"', '"PREQUANT_TTT_ENABLED", "1"'))
    logged_off = {"PREQUANT_TTT_ENABLED": Setting("PREQUANT_TTT_ENABLED", "False", "train_seed42.log", 2, "log")}
    off = run_check([default_on], settings=logged_off)
    assert [(f.rule, f.severity, f.line) for f in off] == [("PG102", Severity.INFO, 40)]
    assert "is false with PREQUANT_TTT_ENABLED=False in train_seed42.log:2" in off[0].message


def test_rescore_after_ttt_is_illegal_only_when_it_is_the_headline() -> None:
    """#991 reports s_1; with the labels swapped the s_0 pass is the `_exact` headline and the
    re-score a logged diagnostic (#1004), which the rule leaves alone."""
    legal = (FIXTURES / "legal" / "score_first_headline_then_diagnostic_rescore.py").read_text()
    assert serious(check_text(legal)) == set()
    swapped = legal.replace('print(f"legal_ttt_exact val_bpb:', 'print(f"legal_ttt val_bpb:').replace(
        'print(f"DIAGNOSTIC post_ttt val_bpb:', 'print(f"final_exact val_bpb:'
    )
    assert serious(check_text(swapped)) == {("PG103", "error", "train_gpt.py", 92)}


def test_batch_size_setting_named_train_is_not_training_data() -> None:
    """Pre-quant TTT sizing its VAL batches with ``h.train_batch_tokens`` stays PG102 (#1972):
    the setting's name must not make the VAL batch look like a training-loader batch."""
    text = (
        (FIXTURES / "illegal" / "PG102_prequant_ttt.py")
        .read_text()
        .replace(
            "            chunk = val_tokens[s * h.seq_len : (s + 8) * h.seq_len + 1].to(device)\n",
            "            chunk = val_tokens[s * h.seq_len : s * h.seq_len + h.train_batch_tokens + 1].to(device)\n",
        )
    )
    assert "h.train_batch_tokens" in text
    assert serious(check_text(text)) == {("PG102", "error", "train_gpt.py", 40)}
