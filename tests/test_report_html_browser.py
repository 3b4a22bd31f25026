"""report.html in a real browser: Debian's headless Chromium opens the pages from disk.

Why a browser and not only string checks: the page must *work* offline — the verdict, the BPB,
every finding and both plots rendered and visible — and must not fetch anything. playwright
drives the system Chromium (``/usr/bin/chromium``; playwright never downloads a browser here),
records every request the page makes and every console error (a Content-Security-Policy
refusal shows there), and routes the browser through a dead proxy so that a request that did
slip out could not succeed. A screenshot of each page is saved in the test's temporary folder.
This test must run in CI (``.ci/run`` installs chromium and playwright): missing pieces fail it,
they never skip it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report_html import check_page, runs  # noqa: F401 — module fixtures shared with the content tests

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: any request that escapes fails
    "--proxy-bypass-list=<-loopback>",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(executable).is_file(), "the browser test needs Debian's chromium (apt-get install chromium)"
    from playwright.sync_api import sync_playwright  # a missing playwright fails the test, it does not skip

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


def _open(browser: Any, page_path: Path, screenshot: Path) -> tuple[Any, list[str], list[str]]:
    """Load ``page_path`` from disk; returns the page, the requested URLs and console errors."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    page.screenshot(path=str(screenshot), full_page=True)
    return page, requests, errors


def test_eval_page_in_chromium_shows_verdict_bpb_findings_and_plots_offline(
    browser: Any,
    runs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = runs["submission"]
    report = json.loads((out / "report.json").read_text())
    screenshot = tmp_path / "report.png"
    page, requests, errors = _open(browser, out / "report.html", screenshot)
    assert requests == [(out / "report.html").resolve().as_uri()]  # the page itself, nothing else
    assert errors == []
    assert page.inner_text("#verdict .badge") == "NOT AUDITED"
    assert page.inner_text("#val-bpb") == f"{report['val_bpb']:.8f}"
    findings = page.locator("#findings .finding")
    assert findings.count() == len(report["findings"]) > 0
    for number, finding in enumerate(report["findings"]):
        text = findings.nth(number).inner_text()
        assert finding["rule"] in text and " ".join(finding["message"].split()) in " ".join(text.split())
    for plot in ("#plot-running svg", "#plot-chunk svg"):
        box = page.locator(plot).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 150
        assert page.locator(f"{plot} [id^=curve-]").count() == 1
    assert screenshot.stat().st_size > 20_000


def test_check_page_in_chromium_shows_the_failing_submission_and_its_path(
    browser: Any,
    check_page: tuple[Path, dict],  # noqa: F811
    tmp_path: Path,
) -> None:
    path, oracle = check_page
    page, requests, errors = _open(browser, path, tmp_path / "check.png")
    assert requests == [path.resolve().as_uri()] and errors == []
    findings = oracle["submissions"][0]["findings"]
    assert page.locator(".submission .verdict .badge").inner_text() == "FAIL"
    assert page.locator(".finding").count() == len(findings)
    pg101 = page.locator('.finding[data-rule="PG101"]')
    steps = [f"{step['file']}:{step['line']}" for step in next(f for f in findings if f["rule"] == "PG101")["path"]]
    assert pg101.locator("li.step > code").all_inner_texts() == steps
    assert pg101.locator("li.step .code").count() == len(steps)  # the code around every step
    assert page.locator("#rule-PG101").is_visible()
