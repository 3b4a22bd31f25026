"""report.html: what the page says, checked against the run and the audit it renders.

The pages come from real runs: golf-check on a failing fixture, and golf-eval on a tiny
reference-architecture artifact — once inside a submission folder whose ``train_gpt.py`` is that
failing fixture (static findings with paths, not audited), once with SGD TTT (to overlay). The
expected strings are escaped with markupsafe, the escaper jinja2 uses. The browser test
(``test_report_html_browser.py``) loads these same pages in Chromium.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from markupsafe import escape

from harness.cli.check import main as check_main
from harness.cli.eval import main as eval_main
from harness.data.embedded import DataPaths
from harness.data.shards import read_shard, write_shard
from harness.errors import EXIT_FINDINGS, EXIT_MISSING_EXTRA, EXIT_OK
from harness.findings import Finding, Severity, Step, Verdict
from harness.report.html_check import render as render_check
from harness.report.html_eval import render_eval
from harness.report.html_runs import read_run
from harness.report.model import CheckReport, SubmissionResult
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import save_artifact

FIXTURE = Path(__file__).parent / "fixtures" / "code" / "illegal" / "PG101_adapt_then_rescore_chunk.py"
VAL_TOKENS = 4 * 1024 + 1


@pytest.fixture(scope="module")
def runs(embedded: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two golf-eval runs of one tiny artifact on the first ~4k embedded validation tokens:
    ``submission`` (a folder holding the failing fixture as train_gpt.py; TTT off) and ``sgd``
    (the artifact alone, SGD TTT). Values are the runs' output folders."""
    base = tmp_path_factory.mktemp("html_runs")
    data = base / "data"
    data.mkdir()
    val = read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:VAL_TOKENS]
    write_shard(data / "fineweb_val_000000.bin", val)
    write_shard(data / "fineweb_train_000000.bin", val[:100])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=embedded.vocab_size, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.08)
    submission = base / "submission"
    submission.mkdir()
    save_artifact(model.state_dict(), submission / "final_model.int8.ptz")
    shutil.copy(FIXTURE, submission / "train_gpt.py")
    common = ["--data", str(data), "--tokenizer", str(embedded.tokenizer_path), "--seq-len", "64"]
    common += ["--chunk-tokens", "512", "--quiet"]
    outs = {"submission": base / "eval_submission", "sgd": base / "eval_sgd"}
    assert eval_main([str(submission), *common, "--out", str(outs["submission"])]) == EXIT_FINDINGS
    artifact = ["--artifact", str(submission / "final_model.int8.ptz")]
    assert eval_main([*artifact, *common, "--ttt", "sgd", "--out", str(outs["sgd"])]) == EXIT_OK
    return outs


@pytest.fixture(scope="module")
def check_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """golf-check --format html (and --format json, the oracle) on the failing fixture."""
    folder = tmp_path_factory.mktemp("check_page")
    page, oracle = folder / "check.html", folder / "check.json"
    assert check_main(["--format", "html", "--no-cache", "--output", str(page), str(FIXTURE)]) == EXIT_FINDINGS
    assert check_main(["--format", "json", "--no-cache", "--output", str(oracle), str(FIXTURE)]) == EXIT_FINDINGS
    return page, json.loads(oracle.read_text())


def test_golf_check_page_shows_the_finding_its_line_and_every_path_step_with_code(
    check_page: tuple[Path, dict],
) -> None:
    page, oracle = check_page
    html = page.read_text()
    (submission,) = oracle["submissions"]
    (finding,) = [f for f in submission["findings"] if f["rule"] == "PG101"]
    assert finding["line"] == 33 and "backward()" in FIXTURE.read_text().splitlines()[32]
    assert 'data-rule="PG101"' in html and "<code>PG101_adapt_then_rescore_chunk.py:33</code>" in html
    assert 'class="badge verdict-fail">FAIL<' in html
    assert '<a href="#rule-PG101">Validation tokens trained on before they are scored</a>' in html
    assert 'id="rule-PG101"' in html  # the catalog page the finding links to
    # every step, in order, with its own highlighted excerpt (the step's line shaded)
    cursor = 0
    assert len(finding["path"]) >= 5
    for step in finding["path"]:
        item = f'<li class="step"><code>{step["file"]}:{step["line"]}</code> {escape(step["note"])}'
        cursor = html.index(item, cursor) + len(item)
        excerpt = html[cursor : html.index("</li>", cursor)]
        assert f'<span class="hll"><span class="linenos">{step["line"]}</span>' in excerpt
    # the sink's own line, highlighted by pygments
    assert '<span class="hll"><span class="linenos">33</span>' in html
    assert '<span class="n">backward</span>' in html


def test_finding_text_is_escaped_not_markup(tmp_path: Path) -> None:
    hostile = Finding(
        "PG101",
        Severity.ERROR,
        "train_gpt.py",
        2,
        "<script>alert(1)</script> & more",
        path=(Step("train_gpt.py", 1, "<img src=x onerror=alert(2)>"),),
    )
    result = SubmissionResult(
        path="sub/train_gpt.py",
        verdict=Verdict.FAIL,
        findings=[hostile],
        sources_text_by_display_name={"train_gpt.py": "x = '</pre><script>alert(3)</script>'\ny = x\n"},
    )
    html = render_check(CheckReport(submissions=[result], tool_version="0"))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_eval_page_has_the_verdict_bpb_artifact_findings_and_both_plots(runs: dict[str, Path]) -> None:
    out = runs["submission"]
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert 'class="badge verdict-fail">NOT AUDITED<' in html
    assert f'<div class="bpb" id="val-bpb">{report["val_bpb"]:.8f}</div>' in html
    assert f"exactly {report['val_bpb']!r}" in html
    assert f"{report['tokens']:,}" in html and f"{report['bytes']:,}" in html
    assert f"<b>{report['artifact']['bytes']:,}</b> of 16,000,000 bytes" in html
    assert report["log"]["head_sha256"] in html
    assert html.count('<div class="finding ') == len(report["findings"]) > 0
    static = [f for f in report["findings"] if f["rule"] == "PG101" and f["path"]]
    assert static, "the fixture's PG101 path reaches the eval report"
    for step in static[0]["path"]:
        assert f'<li class="step"><code>{step["file"]}:{step["line"]}</code> {escape(step["note"])}' in html
    assert '<span class="linenos">33</span>' in html  # excerpt read from the submission's train_gpt.py
    assert html.count('id="curve-running-') == 1 and html.count('id="curve-chunk-') == 1
    assert "causality" in html  # the probes ran and are listed
    assert "No refused attempts." in html  # the guards' refusals (none here)
    assert f"<b>Isolation:</b> {report['isolation']['mode']} — " in html  # which mode ran


def test_report_from_two_logs_overlays_two_curves_on_each_plot(runs: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "two.html"
    plain, sgd = runs["submission"] / "chunks.jsonl", runs["sgd"] / "chunks.jsonl"
    assert eval_main(["report", str(plain), "--against", str(sgd), "--output", str(page)]) == EXIT_OK
    html = page.read_text()
    for kind in ("running", "chunk"):
        assert re.findall(rf'id="curve-{kind}-(\d+)"', html) == ["0", "1"]
    bpb = json.loads((runs["submission"] / "report.json").read_text())["val_bpb"]
    assert f'id="val-bpb">{bpb:.8f}<' in html  # recomputed from the log alone, the same figure
    assert 'class="badge verdict-pass">LOG VERIFIED<' in html
    assert "eval_submission/chunks.jsonl (TTT none)" in html and "eval_sgd/chunks.jsonl (TTT sgd)" in html
    assert "Rendered from the chunk logs alone" in html


def test_report_from_a_tampered_log_says_it_failed_verification(runs: dict[str, Path], tmp_path: Path) -> None:
    lines = (runs["sgd"] / "chunks.jsonl").read_text().splitlines()
    chunk = json.loads(lines[2])
    chunk["bytes"] += 1
    lines[2] = json.dumps(chunk, sort_keys=True, separators=(",", ":"))
    tampered = tmp_path / "chunks.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    page = tmp_path / "tampered.html"
    assert eval_main(["report", str(tampered), "--output", str(page)]) == EXIT_OK
    html = page.read_text()
    assert 'class="badge verdict-fail">LOG NOT VERIFIED<' in html
    assert "line 4: hash chain broken" in html


def test_a_missing_extra_is_one_line_and_its_own_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    expected = "report.html needs the report extra (matplotlib is not installed): pip install 'golf-harness[report]'"
    assert check_main(["--format", "html", str(FIXTURE)]) == EXIT_MISSING_EXTRA
    assert capsys.readouterr().err == f"golf-check: error: {expected}\n"
    assert eval_main(["report", str(tmp_path / "chunks.jsonl")]) == EXIT_MISSING_EXTRA
    assert capsys.readouterr().err == f"golf-eval: error: {expected}\n"


def test_golf_check_core_path_never_imports_the_report_extra() -> None:
    probe = (
        "import sys\nfrom harness.cli.check import main\n"
        f"main(['--format', 'json', '--no-cache', {str(FIXTURE)!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jinja2', 'matplotlib', 'markupsafe'}), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_eval_page_lists_the_guards_refusals_and_a_failed_probe(runs: dict[str, Path]) -> None:
    out = runs["submission"]
    report = json.loads((out / "report.json").read_text())
    report["guards"]["attempts"] = [
        {
            "rule": "PG302",
            "event": "open",
            "target": "/data/fineweb_train_000000.bin",
            "file": "golf_entry.py",
            "line": 12,
            "count": 3,
        }
    ]
    report["probes"]["results"][0] = {
        "name": "causality",
        "rule": "PG201",
        "status": "fail",
        "reason": "logit at 3 moved",
    }
    html = render_eval(report, [read_run(out / "chunks.jsonl")])
    assert (
        '<tr><td class="mono">PG302</td><td>open</td><td><code>/data/fineweb_train_000000.bin</code></td>'
        '<td><code>golf_entry.py:12</code></td><td class="num">3</td></tr>'
    ) in html
    assert '<td>causality</td><td class="mono">PG201</td><td>fail</td>' in html and "logit at 3 moved" in html


def test_a_code_window_that_starts_on_a_blank_line_keeps_its_line_numbers() -> None:
    """pygments strips leading blank lines unless told not to: the window around line 5 starts at
    the blank line 2, and every number must still name the line shown next to it."""
    from harness.report.html_code import Highlighter

    source = "import os\n\ndef load(pattern):\n    import glob\n    return glob.glob(pattern)\n\nx = 1\n"
    page = Highlighter.create().excerpt(source, "train_gpt.py", 5)
    assert page is not None
    text = re.sub(r"<[^>]+>", "", page)
    assert text.splitlines()[:6] == [
        "2",
        "3def load(pattern):",
        "4    import glob",
        "5    return glob.glob(pattern)",
        "6",
        "7x = 1",
    ]
