"""golf-check end to end: exit codes, filters, allowlist, output files, caching, parallel runs,
the --changed gate wiring and the no-torch guarantee.

Most tests replace the rule families with a tiny marker family (a name ``MARK_PG9xx_LEVEL`` in
the code raises rule PG9xx at that level on that line), so exit codes and filters are tested
independently of how the real rules evolve. The no-torch test runs the real families.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness.catalog as catalog
import harness.check.engine as engine
from harness.check.context import CheckContext
from harness.cli.check import main
from harness.findings import Finding, Severity

MARKER = re.compile(r"MARK_(PG9\d\d)_(ERROR|WARNING|INFO)")
FAMILY_NAME = "tests_cli_marker_family"


def _marker_check(ctx: CheckContext) -> list[Finding]:
    findings = []
    for parsed in ctx.parsed:
        for number, line in enumerate(parsed.source.text.splitlines(), start=1):
            for rule_id, level in MARKER.findall(line):
                findings.append(
                    Finding(
                        rule_id, Severity(level.lower()), parsed.source.display_name, number, f"marker {rule_id} found"
                    )
                )
    return findings


MARKER_RULE = """
id = "{id}"
name = "marker-{level}"
title = "Marker rule at {level}"
severity = "{level}"
flags = "A MARK_ name in the code."
why = "Test rule; see #152."
sources = ["#152"]
checks = ["static"]
fix = "Remove the marker."

[[examples]]
kind = "illegal"
title = "marker"
file = "example.txt"
code = "MARK"

[[examples]]
kind = "legal"
title = "no marker"
file = "example.txt"
code = "none"
"""


@pytest.fixture(autouse=True)
def marker_family(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = catalog.read_rule_files()
    files["PG901.toml"] = MARKER_RULE.format(id="PG901", level="error")
    files["PG902.toml"] = MARKER_RULE.format(id="PG902", level="warning")
    with_markers = catalog.build_catalog(files)
    monkeypatch.setattr(catalog, "load_catalog", lambda: with_markers)
    monkeypatch.setattr(engine, "FAMILIES", (engine.Family(FAMILY_NAME, _marker_check),))
    monkeypatch.setenv("GOLF_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


PASS_CODE = "def main():\n    return 1\n"
REVIEW_CODE = "def main():\n    MARK_PG902_WARNING = 1\n    return MARK_PG902_WARNING\n"
FAIL_CODE = "import os\nMARK_PG901_ERROR = 1\nMARK_PG902_WARNING = 2\n"
BROKEN_CODE = "def main(:\n    pass\n"


def _submission(name: str, code: str) -> Path:
    folder = Path("records") / "track" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_text(code, encoding="utf-8")
    return folder


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code, out, err = _run([*argv, "--format", "json"], capsys)
    assert err == ""
    return code, json.loads(out)


def test_exit_codes_per_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ("ok", PASS_CODE, 0, "pass"),
        ("warn", REVIEW_CODE, 0, "review"),
        ("bad", FAIL_CODE, 1, "fail"),
        ("broken", BROKEN_CODE, 3, "error"),
    ]
    for name, code_text, expected_code, verdict in cases:
        folder = _submission(name, code_text)
        code, report = _json([str(folder)], capsys)
        assert (code, report["submissions"][0]["verdict"]) == (expected_code, verdict), name
    broken = _json(["records/track/broken"], capsys)[1]["submissions"][0]["findings"]
    assert [(f["rule"], f["severity"], f["file"]) for f in broken] == [("PG000", "error", "train_gpt.py")]


def test_a_crashing_family_is_a_pg000_error_beside_the_others(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(ctx: CheckContext) -> list[Finding]:
        raise KeyError("no such node")

    marker = engine.FAMILIES[0]
    monkeypatch.setattr(engine, "FAMILIES", (engine.Family("crashing", crash), marker))
    code, report = _json([str(_submission("warn", REVIEW_CODE)), "--no-cache"], capsys)
    found = [(f["rule"], f["severity"], f["message"]) for f in report["submissions"][0]["findings"]]
    assert code == 3
    assert ("PG000", "error", "analysis 'crashing' could not complete: KeyError: 'no such node'") in found
    assert {rule for rule, _, _ in found} == {"PG000", "PG902"}  # the marker family still ran


def test_the_folder_family_runs_after_the_others_and_only_for_a_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def folder_family(ctx: CheckContext) -> list[Finding]:
        seen.append(sorted(f.rule for f in ctx.findings_so_far))
        return []

    folder_row = engine.Family("folder", folder_family, folder_only=True, reads_findings=True)
    monkeypatch.setattr(engine, "FAMILIES", (folder_row, engine.FAMILIES[0]))  # listed first, runs last
    folder = _submission("warn", REVIEW_CODE)
    _json([str(folder / "train_gpt.py"), "--no-cache"], capsys)
    assert seen == []  # a single .py file has no README, logs or submission.json
    _json([str(folder), "--no-cache"], capsys)
    assert seen == [["PG902", "PG902"]]  # the marker family's findings, one per marked line


def test_tree_exit_code_fail_beats_error_beats_pass(capsys: pytest.CaptureFixture[str]) -> None:
    _submission("ok", PASS_CODE)
    _submission("broken", BROKEN_CODE)
    code, report = _json(["records", "--jobs", "1"], capsys)
    assert code == 3
    assert [(s["path"], s["verdict"]) for s in report["submissions"]] == [
        ("records/track/broken", "error"),
        ("records/track/ok", "pass"),
    ]
    _submission("bad", FAIL_CODE)
    code, report = _json(["records", "--jobs", "1"], capsys)
    assert code == 1
    assert report["summary"] == {"submissions": 3, "pass": 1, "review": 0, "fail": 1, "error": 1}


def test_fail_on_warning_select_and_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    warn = _submission("warn", REVIEW_CODE)
    bad = _submission("bad", FAIL_CODE)
    assert _json([str(warn), "--fail-on", "warning"], capsys)[0] == 1
    code, report = _json([str(bad), "--ignore", "PG901"], capsys)
    assert code == 0
    assert [f["rule"] for f in report["submissions"][0]["findings"]] == ["PG902"]
    assert report["submissions"][0]["verdict"] == "review"
    code, report = _json([str(bad), "--select", "pg901"], capsys)
    assert (code, [f["rule"] for f in report["submissions"][0]["findings"]]) == (1, ["PG901"])
    code, out, err = _run([str(bad), "--select", "PG1O1"], capsys)
    assert (code, out) == (2, "")
    assert err == "golf-check: error: --select: 'PG1O1' is not a rule ID or prefix like PG1 or PG101\n"
    code, _, err = _run([str(bad), "--ignore", "PG903"], capsys)
    assert (code, err) == (2, "golf-check: error: --ignore: unknown rule PG903 (see --list-rules)\n")


def test_allowlist_moves_a_finding_out_of_the_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = _submission("bad", FAIL_CODE)
    allow = tmp_path / "allow.toml"
    allow.write_text(
        '[[allow]]\nrule = "PG901"\npath = "records/track/bad/train_gpt.py"\nline = 2\n'
        'reason = "reviewed: marker is harmless"\n',
        encoding="utf-8",
    )
    code, report = _json([str(bad), "--allowlist", str(allow)], capsys)
    assert code == 0
    assert report["submissions"][0]["verdict"] == "review"
    assert report["submissions"][0]["findings"][-1] == {
        "rule": "PG901",
        "severity": "info",
        "file": "train_gpt.py",
        "line": 2,
        "message": "allowlisted (error): marker PG901 found [reason: reviewed: marker is harmless]",
        "path": [],
    }
    allow.write_text("[[allow]]\nrule = 'PG901'\n", encoding="utf-8")
    code, _, err = _run([str(bad), "--allowlist", str(allow)], capsys)
    assert code == 2
    assert err.startswith("golf-check: error: allowlist ") and err.count("\n") == 1


def test_usage_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--no-such-flag", "x"], "golf-check: error: unrecognized arguments: --no-such-flag (see --help)\n"),
        ([], "golf-check: error: no PATH given (see --help)\n"),
        (["missing_dir"], "golf-check: error: no such file or folder: missing_dir\n"),
        (["--explain", "PG999"], "golf-check: error: unknown rule 'PG999' (see golf-check --list-rules)\n"),
        ([".", "--jobs", "0"], "golf-check: error: --jobs must be at least 1\n"),
        ([".", "--format", "xml"], None),
        ([".", "--frontier", "nope.json"], "golf-check: error: --frontier nope.json: no such file\n"),
        ([".", "--changed", "a...b"], "golf-check: error: give either PATH… or --changed, not both\n"),
    ]
    for argv, expected in cases:
        code, out, err = _run(argv, capsys)
        assert (code, out) == (2, ""), argv
        assert err.count("\n") == 1 and "Traceback" not in err, argv
        if expected is not None:
            assert err == expected


def test_internal_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.check.runner as runner

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runner, "finalize", explode)
    code, out, err = _run([str(_submission("ok", PASS_CODE))], capsys)
    assert (code, out, err) == (2, "", "golf-check: error: internal error: RuntimeError: boom second line\n")


def test_output_file_and_stable_json_cold_warm_and_parallel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for index in range(3):
        _submission(f"s{index}", (FAIL_CODE if index == 1 else PASS_CODE) + f"# {index}\n")
    cold = tmp_path / "cold.json"
    warm = tmp_path / "warm.json"
    serial = tmp_path / "serial.json"
    assert _run(["records", "--format", "json", "--output", str(cold)], capsys) == (1, "", "")
    cache_entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(cache_entries) == 3
    assert main(["records", "--format", "json", "--output", str(warm)]) == 1
    assert main(["records", "--format", "json", "--no-cache", "--jobs", "1", "--output", str(serial)]) == 1
    assert cold.read_bytes() == warm.read_bytes() == serial.read_bytes()
    assert [s["verdict"] for s in json.loads(cold.read_text())["submissions"]] == ["pass", "fail", "pass"]
    capsys.readouterr()


def test_cache_is_invalidated_by_an_edit(capsys: pytest.CaptureFixture[str]) -> None:
    folder = _submission("s", PASS_CODE)
    assert _json([str(folder)], capsys)[0] == 0
    (folder / "train_gpt.py").write_text(FAIL_CODE, encoding="utf-8")
    assert _json([str(folder)], capsys)[0] == 1


def test_formats_render_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(_submission("bad", FAIL_CODE))
    code, out, _ = _run([bad, "--format", "github"], capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        "::error file=records/track/bad/train_gpt.py,line=2,title=PG901 (error)::marker PG901 found"
    )
    code, out, _ = _run([bad, "--format", "markdown"], capsys)
    assert "| PG901 | error | `train_gpt.py:2` | marker PG901 found |" in out
    code, out, _ = _run([bad, "--format", "sarif"], capsys)
    assert json.loads(out)["runs"][0]["results"][0]["ruleId"] == "PG901"
    code, out, _ = _run([bad], capsys)
    assert "        2 │ MARK_PG901_ERROR = 1" in out.splitlines()
    code, out, _ = _run(["--list-rules"], capsys)
    assert (code, out.splitlines()[1].split()[:3]) == (0, ["PG000", "error", "could-not-analyze"])
    code, out, _ = _run(["--explain", "PG000"], capsys)
    assert code == 0 and out.startswith("PG000 could-not-analyze\nSubmission could not be analyzed\n")
    assert "Illegal example: entry point with a syntax error (train_gpt.py)" in out
    code, out, _ = _run(["--version"], capsys)
    assert (code, out) == (0, "golf-check 0.1.0\n")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )


def test_changed_audits_only_touched_folders(capsys: pytest.CaptureFixture[str]) -> None:
    _git(Path.cwd(), "init", "-q", "-b", "main")
    _submission("old", FAIL_CODE)
    _git(Path.cwd(), "add", "-A")
    _git(Path.cwd(), "commit", "-q", "-m", "base")
    _submission("new", REVIEW_CODE)
    _git(Path.cwd(), "add", "-A")
    _git(Path.cwd(), "commit", "-q", "-m", "add new")
    code, report = _json(["--changed", "HEAD~1...HEAD"], capsys)
    assert code == 0
    assert [(s["path"], s["verdict"]) for s in report["submissions"]] == [
        ("diff HEAD~1...HEAD", "pass"),
        ("records/track/new", "review"),
    ]


def test_golf_check_never_imports_torch(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "train_gpt.py").write_text(
        "import torch\nval_tokens = load_validation_tokens('fineweb_val_*')\nprint(val_tokens)\n",
        encoding="utf-8",
    )
    probe = (
        "import sys\n"
        "from harness.cli.check import main\n"
        "codes = [main([sys.argv[1], '--no-cache', '--format', f]) for f in "
        "('json', 'sarif', 'markdown', 'github')]\n"
        "assert 'rich' not in sys.modules, 'rich imported without the text format'\n"
        "codes.append(main([sys.argv[1], '--no-cache']))\n"
        "main(['--explain', 'PG000'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'harness.check.engine' in sys.modules\n"
        "print('codes', codes, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GOLF_HARNESS_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"codes \[(\d), \1, \1, \1, \1\]", result.stderr)


_REAL_ANALYZE_ONE = None


def _dying_analyze_one(path: str, options: object) -> object:
    """Stands in for a worker that is killed (OOM) while auditing one particular submission."""
    if path.endswith("dies"):
        os._exit(9)
    return _REAL_ANALYZE_ONE(path, options)  # type: ignore[misc]


def test_a_dead_worker_costs_only_its_own_submission(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.check.runner as runner

    global _REAL_ANALYZE_ONE
    _REAL_ANALYZE_ONE = runner.analyze_one
    monkeypatch.setattr(runner, "analyze_one", _dying_analyze_one)
    _submission("a_ok", PASS_CODE)
    _submission("b_bad", FAIL_CODE)
    _submission("dies", PASS_CODE + "# x\n")
    code, report = _json(["records", "--jobs", "2"], capsys)
    assert code == 1
    verdicts = {s["path"]: (s["verdict"], [f["rule"] for f in s["findings"]]) for s in report["submissions"]}
    assert verdicts == {
        "records/track/a_ok": ("pass", []),
        "records/track/b_bad": ("fail", ["PG901", "PG902"]),
        "records/track/dies": ("error", ["PG000"]),
    }
    died = report["submissions"][2]["findings"][0]["message"]
    assert died == "could not analyze: the worker process auditing it died (killed or out of memory)"
    # A crash is not cached: with a healthy worker the same folder is analyzed afresh.
    monkeypatch.setattr(runner, "analyze_one", _REAL_ANALYZE_ONE)
    code, report = _json(["records", "--jobs", "2"], capsys)
    assert [s["verdict"] for s in report["submissions"]] == ["pass", "fail", "pass"]


def test_warm_run_is_served_from_the_cache(tmp_path: Path) -> None:
    from harness.check.context import CheckOptions
    from harness.check.runner import audit

    _submission("a", PASS_CODE)
    _submission("b", FAIL_CODE)
    cold = audit([Path("records")], CheckOptions(), jobs=2)
    warm = audit([Path("records")], CheckOptions(), jobs=2)
    assert [r.from_cache for r in cold] == [False, False]
    assert [r.from_cache for r in warm] == [True, True]
    assert [(r.path, r.findings) for r in warm] == [(r.path, r.findings) for r in cold]
    fresh = audit([Path("records")], CheckOptions(), jobs=2, use_cache=False)
    assert [r.from_cache for r in fresh] == [False, False]
