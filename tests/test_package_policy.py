"""Package-rule severity policy of issue 12: shapes of accepted records (legal by definition) and
of real pull requests that the package rules used to fail.

Every folder here is written by the test (the reference-trainer log builder, or a few lines of
text), each citing the submission shape it reproduces. Each test asserts the rule, its severity
and the verdict the findings give, and where it makes sense the twin that does fail.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from test_package_checks import LogSpec, PackageSpec, audit, build, builder, json_line

from harness.check.pkg.logs import parse_log
from harness.findings import Finding, Severity, Verdict, verdict_for


def rules(findings: list[Finding]) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in findings}


def write_json(root: Path, data: dict) -> None:
    (root / "submission.json").write_text(json.dumps(data, indent=2) + "\n")


# PG404 --------------------------------------------------------------------------------------


def test_one_seed_record_is_a_review_not_a_fail(tmp_path: Path) -> None:
    """Early records were merged on one seed (2026-03-19 folders with a single train.log)."""
    root = build(tmp_path, PackageSpec(logs=PackageSpec().logs[:1], json_drop=("seeds", "seed_results")))
    findings = audit(root)
    assert rules(findings) == {("PG404", Severity.WARNING)}
    assert verdict_for(findings) is Verdict.REVIEW


def test_other_configuration_logs_beside_the_seeds_warn(tmp_path: Path) -> None:
    """A folder keeping an ablation log with another depth next to its seeds (2026-04-06 shape)."""
    spec = PackageSpec().with_logs(style="block")
    spec.logs[2] = replace(spec.logs[2], hparams={**builder.BASE_HPARAMS, "num_layers": "11"})
    findings = audit(build(tmp_path, spec))
    assert rules(findings) == {("PG404", Severity.WARNING)}
    assert verdict_for(findings) is Verdict.REVIEW


# PG402 --------------------------------------------------------------------------------------


def test_seeds_written_as_an_object_keyed_by_seed(tmp_path: Path) -> None:
    """``"seeds": {"42": {"val_bpb": …}, …}`` is how #512 and #779 wrote their seeds: a shape,
    not an error, and its keys are the declared seeds (a missing log is still noticed)."""
    spec = PackageSpec()
    data = builder.submission_json(spec)
    data["seeds"] = {str(log.seed): {"val_bpb": round(log.val_bpb, 4)} for log in spec.logs}
    root = build(tmp_path, replace(spec, json_text=json.dumps(data, indent=2)))
    assert audit(root) == []
    data["seeds"]["7"] = {"val_bpb": 1.2}
    write_json(root, data)
    findings = audit(root)
    assert [(f.rule, f.severity, f.message) for f in findings] == [
        ("PG404", Severity.WARNING, "submission.json lists seed 7 but no training log has that seed")
    ]


def test_compliance_block_with_numbers_is_information(tmp_path: Path) -> None:
    """2026-04-29 logged its maxima inside ``compliance`` (``"train_time_max_s": "599.623"``)."""
    spec = PackageSpec(
        json_overrides={
            "compliance": {"score_first_ttt": True, "artifact_bytes_max": 15952690, "train_time_max_s": "599.623"}
        }
    )
    assert audit(build(tmp_path, spec)) == []


def test_malformed_submission_json_never_fails(tmp_path: Path) -> None:
    root = build(tmp_path, PackageSpec(json_text='{"author": "Ada",, }'))
    findings = audit(root)
    assert rules(findings) == {("PG402", Severity.WARNING)}
    assert verdict_for(findings) is Verdict.REVIEW


# PG401 --------------------------------------------------------------------------------------


def test_record_without_a_log_is_a_review(tmp_path: Path) -> None:
    """2026-03-21 was merged without a training log in its folder."""
    root = build(tmp_path)
    for log in root.glob("*.log"):
        log.unlink()
    findings = audit(root)
    assert ("PG401", Severity.WARNING) in rules(findings)
    assert verdict_for(findings) is Verdict.REVIEW


def test_undecodable_shim_is_not_a_compile_failure_but_non_python_payload_is(tmp_path: Path) -> None:
    """#1953 ships an lzma shim this tool could not decode: PG000 says so; PG401 must not claim
    the script does not compile. A payload that decodes to something that is not Python does."""
    root = build(tmp_path)
    undecodable = Finding(
        "PG000",
        Severity.ERROR,
        "train_gpt.py",
        0,
        "could not decode train_gpt.py:3 (lzma.decompress): lzma: compressed data ended early",
    )
    assert [f for f in audit(root, prior=(undecodable,)) if f.rule == "PG401"] == []
    not_python = Finding(
        "PG000",
        Severity.ERROR,
        "train_gpt.py",
        0,
        "could not decode train_gpt.py:3 (b85decode → lzma.decompress): the decoded data is not Python",
    )
    [finding] = [f for f in audit(root, prior=(not_python,)) if f.rule == "PG401"]
    assert finding.severity is Severity.ERROR and "does not compile" in finding.message


def test_submission_json_under_a_variant_name_is_read(tmp_path: Path) -> None:
    """A folder shipping ``submission_<variant>.json`` only (2026-03-24 shape)."""
    root = build(tmp_path)
    (root / "submission.json").rename(root / "submission_binary.json")
    assert audit(root) == []


# PG403 --------------------------------------------------------------------------------------


def test_claim_of_one_seed_run_is_info(tmp_path: Path) -> None:
    """2026-03-18 reports one of its two logs' scores, not their mean."""
    spec = PackageSpec(logs=PackageSpec().logs[:2], json_drop=("seed_results",))
    root = build(
        tmp_path,
        replace(
            spec,
            json_overrides={"val_bpb": round(spec.logs[0].val_bpb, 8), "val_loss": round(spec.logs[0].val_loss, 8)},
        ),
    )
    findings = [f for f in audit(root) if f.rule == "PG403"]
    assert {f.severity for f in findings} == {Severity.INFO}
    assert findings[0].message.startswith("submission.json val_bpb")
    assert "is the score of one run (train_seed42.log:" in findings[0].message


def test_latest_version_with_a_renamed_stage_is_backed(tmp_path: Path) -> None:
    """2026-03-17 ships four versions of one seed; their TTT lines are named differently
    (``final_ttt_lora`` vs ``final_int8_ttt_lora``) and the claim is the last one's."""
    logs = [
        LogSpec(seed=1337, val_loss=2.0153, families=("final_int8_zlib_roundtrip", "final_ttt_lora")),
        LogSpec(seed=1337, val_loss=2.0142, families=("final_int8_zlib_roundtrip", "final_int8_ttt_lora")),
    ]
    spec = PackageSpec(logs=logs, log_name="train_v{seed}.txt", json_drop=("seeds", "seed_results"))
    root = tmp_path / "records" / "track_10min_16mb" / "2026-03-17_Versions"
    root.mkdir(parents=True)
    (root / "README.md").write_text("# versions\n")
    (root / "train_gpt.py").write_text(builder.TRAIN_GPT)
    code = len(builder.TRAIN_GPT.encode())
    for index, log in enumerate(logs):
        (root / f"train_v{index}.txt").write_text(builder.render_log(log, code))
    data = builder.submission_json(spec)
    data.update(val_bpb=round(logs[1].val_bpb, 4), val_loss=2.0142)
    write_json(root, data)
    findings = audit(root)
    assert {(f.rule, f.severity) for f in findings if f.rule == "PG403"} <= {("PG403", Severity.INFO)}
    assert verdict_for(findings) is not Verdict.FAIL


def test_score_label_followed_by_settings_is_read() -> None:
    """2026-03-19 prints ``final_sliding_window_eval stride:64 val_loss:… val_bpb:…``."""
    log = parse_log(
        "step:1/1 train_time:5ms step_avg:5.00ms\n"
        "final_sliding_window_eval stride:64 val_loss:1.9637 val_bpb:1.1630 eval_time:72650ms\n"
        "final_sliding_window_eval_exact stride:64 val_loss:1.96369923 val_bpb:1.16301431\n",
        "train.log",
    )
    [family] = log.families()
    assert (family.family, family.val_bpb, family.eval_time_ms) == ("final_sliding_window_eval", 1.16301431, 72650.0)


def test_claim_better_than_every_logged_number_fails_and_a_worse_one_warns(tmp_path: Path) -> None:
    """The record claim the logs clearly contradict (no run printed it) is the one PG403 error;
    a claim worse than the logs (2026-04-04 reported another run's mean) is a question."""
    better = build(tmp_path / "better", PackageSpec(json_overrides={"val_bpb": 1.1500}))
    [finding] = [f for f in audit(better) if f.rule == "PG403"]
    assert (finding.severity, finding.line) == (Severity.ERROR, json_line(better, "val_bpb"))
    assert "no run in the folder shows it" in finding.message
    worse = build(tmp_path / "worse", PackageSpec(json_overrides={"val_bpb": 1.4709}))
    findings = audit(worse)
    assert rules(findings) == {("PG403", Severity.WARNING)}
    non_record = builder.build_package(
        tmp_path / "records" / "track_non_record_16mb" / "x", PackageSpec(json_overrides={"val_bpb": 1.1500})
    )
    assert rules(audit(non_record)) == {("PG403", Severity.WARNING)}


def test_a_claim_that_truncates_the_logged_digits_is_not_contradicted(tmp_path: Path) -> None:
    mean = sum(log.val_bpb for log in PackageSpec().logs) / 3
    truncated = int(mean * 100) / 100  # 1.22 for 1.2243…: two decimals, cut not rounded
    findings = audit(build(tmp_path, PackageSpec(json_overrides={"val_bpb": truncated})))
    assert {f.severity for f in findings if f.rule == "PG403"} == {Severity.WARNING}


# PG304 --------------------------------------------------------------------------------------


def test_in_flight_step_past_600_s_is_no_finding(tmp_path: Path) -> None:
    """2026-03-20 and 2026-03-25 log 600,099 ms and 600,137 ms with 81-87 ms steps: more than
    one average step past 600 s, but the step in flight."""
    root = build(tmp_path, PackageSpec().with_logs(train_time_ms=600_137, step_avg_ms=87.0))
    assert audit(root) == []


def test_one_long_reproduction_beside_runs_within_the_limit_warns(tmp_path: Path) -> None:
    """2026-03-17 keeps a 2,400 s single-GPU run beside its 600 s runs."""
    spec = PackageSpec()
    spec.logs[1] = replace(spec.logs[1], train_time_ms=2_400_107)
    findings = audit(build(tmp_path, spec))
    assert rules(findings) == {("PG304", Severity.WARNING)}
    assert "2 other scored log(s) trained within it" in findings[0].message


def test_readme_title_saying_not_a_record_skips_time_limits(tmp_path: Path) -> None:
    """2026-03-24 trained 7,763 s and says "non-record submission" in its README title; the
    folder was submitted on its own, outside the records tree."""
    spec = PackageSpec(
        logs=[LogSpec(seed=42, val_loss=2.05, train_time_ms=7_763_355)], json_drop=("seeds", "seed_results", "track")
    )
    root = builder.build_package(tmp_path / "2026-03-24_Binary", spec)
    (root / "README.md").write_text("# Notable Non-Record Submission: binary U-Net\n\nTrained for two hours.\n")
    assert audit(root) == []
    (root / "README.md").write_text("# Binary U-Net\n\nTrained for two hours.\n")
    findings = audit(root)
    assert ("PG304", Severity.ERROR) in rules(findings)
    assert verdict_for(findings) is Verdict.FAIL


# PG303 --------------------------------------------------------------------------------------


def test_logged_total_counting_uncompressed_code_beside_a_launcher_warns(tmp_path: Path) -> None:
    """2026-04-06 ships a 74-byte launcher; its logs count 78,688 bytes of readable code and
    print a total of 16,054,963 bytes, while submission.json gives each seed's artifact under
    the cap. The readings disagree: a warning."""
    launcher = 'exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())\n'
    spec = PackageSpec(train_gpt=launcher).with_logs(total_bytes=16_054_963, code_bytes=78_688)
    root = build(tmp_path, spec)
    data = json.loads((root / "submission.json").read_text())
    for result in data["seed_results"].values():
        result["artifact_bytes"] = 15_976_275
    data["bytes_total"] = 15_976_275
    write_json(root, data)
    findings = audit(root)
    assert rules(findings) == {("PG303", Severity.WARNING)}
    assert verdict_for(findings) is Verdict.REVIEW


def test_readable_copy_bigger_than_the_logged_code_is_no_finding(tmp_path: Path) -> None:
    """#1953 ships a 171 kB train_gpt.py while its logs count 42,742 bytes of code and a total
    under the cap: the shipped file can argue a total down, never up."""
    big = builder.TRAIN_GPT + "#" * 200_000 + "\n"
    spec = PackageSpec(train_gpt=big).with_logs(total_bytes=15_950_000, code_bytes=42_742)
    data_root = build(tmp_path, spec)
    data = json.loads((data_root / "submission.json").read_text())
    data["bytes_code"] = 42_742
    write_json(data_root, data)
    assert audit(data_root) == []


def test_non_record_over_the_cap_warns(tmp_path: Path) -> None:
    """2026-03-23 (``"track": "non-record-16mb"``) logs 16,638,468 bytes and was merged."""
    spec = PackageSpec(json_overrides={"track": "non-record-16mb"}).with_logs(total_bytes=16_638_468)
    findings = audit(build(tmp_path, spec))
    assert {(f.rule, f.severity) for f in findings} == {("PG303", Severity.WARNING)}
    assert "not a record claim" in findings[0].message


def test_run_on_fewer_gpus_than_the_limit_is_for_warns(tmp_path: Path) -> None:
    """#1527 trained 6,377 s on one A100 (``world_size:1``) and extrapolated to 8xH100: its clock
    says nothing about the 8-GPU run. The same clock with eight GPUs fails."""
    hparams = {**builder.BASE_HPARAMS, "world_size": "1"}
    spec = PackageSpec().with_logs(train_time_ms=6_376_997, hparams=hparams)
    findings = audit(build(tmp_path / "one", spec))
    assert rules(findings) == {("PG304", Severity.WARNING)}
    assert "on world_size 1: the limit is for 8xH100" in findings[0].message
    eight = PackageSpec().with_logs(train_time_ms=6_376_997, hparams={**hparams, "world_size": "8"})
    assert rules(audit(build(tmp_path / "eight", eight))) == {("PG304", Severity.ERROR)}


def test_claim_far_worse_than_the_baseline_is_no_record_attempt(tmp_path: Path) -> None:
    """#1653 sits under track_10min_16mb but claims 2.2585 from an RTX 4090 run (1,372 s): no
    record can be worse than the naive baseline (1.2244), so the record limits do not apply."""
    spec = PackageSpec(
        logs=[LogSpec(seed=42, val_loss=3.8, train_time_ms=1_371_706)], json_drop=("seeds", "seed_results")
    )
    findings = audit(build(tmp_path, spec))
    assert findings == []
    record = PackageSpec(
        logs=[LogSpec(seed=42, val_loss=2.07, train_time_ms=1_371_706)], json_drop=("seeds", "seed_results")
    )
    assert ("PG304", Severity.ERROR) in rules(audit(build(tmp_path / "record", record)))


def test_single_log_total_over_the_cap_with_a_smaller_claimed_export_warns(tmp_path: Path) -> None:
    """#207's one log prints 16,032,236 bytes; its submission.json claims a 15,704,854-byte
    re-export as bytes_total. With one scored log the number covers it: readings disagree."""
    spec = PackageSpec(
        logs=[LogSpec(seed=42, val_loss=2.07, total_bytes=16_032_236)],
        json_drop=("seeds", "seed_results"),
        json_overrides={"bytes_total": 15_704_854},
    )
    findings = audit(build(tmp_path, spec))
    assert {(f.rule, f.severity) for f in findings if f.rule == "PG303"} == {("PG303", Severity.WARNING)}
    assert "but submission.json bytes_total gives 15,704,854 bytes" in findings[0].message
