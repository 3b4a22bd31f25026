"""golf-check --pull-requests on a throw-away git repository built here: pull refs made with
``git update-ref``, submissions written as minimal programs, audited from the git objects."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.check.context import CheckOptions
from harness.check.runner import ReviewFilters
from harness.cli.check import main
from harness.errors import EXIT_NOT_A_REPOSITORY
from harness.findings import Verdict
from harness.pull_requests.backlog import Backlog, Progress, audit_backlog
from harness.pull_requests.rows import backlog_report
from harness.report.backlog import BacklogReport

LEGAL = 'import glob\nimport os\n\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\n\nDATA = os.environ.get("DATA_PATH", "./data")\n\n\ndef load(pattern):\n    files = sorted(glob.glob(pattern))\n    return torch.cat([torch.from_numpy(np.fromfile(f, dtype="<u2", offset=1024).astype(np.int64)) for f in files])\n\n\ndef train(model, tokens):\n    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)\n    for start in range(0, tokens.numel() - 65, 64):\n        chunk = tokens[start : start + 65]\n        loss = F.cross_entropy(model(chunk[:-1]), chunk[1:])\n        optimizer.zero_grad()\n        loss.backward()\n        optimizer.step()\n\n\ndef evaluate(model, tokens):\n    with torch.no_grad():\n        return F.cross_entropy(model(tokens[:-1]), tokens[1:]).item()\n\n\ndef main():\n    model = torch.nn.Sequential(torch.nn.Embedding(1024, 64), torch.nn.Linear(64, 1024))\n    train(model, load(os.path.join(DATA, "fineweb_train_*.bin")))\n    print(f"val_loss:{evaluate(model, load(os.path.join(DATA, \'fineweb_val_*.bin\'))):.4f}")\n\n\nif __name__ == "__main__":\n    main()\n'
ILLEGAL = LEGAL.replace(
    'train(model, load(os.path.join(DATA, "fineweb_train_*.bin")))',
    'train(model, load(os.path.join(DATA, "fineweb_val_*.bin")))',
)
README = "# Tiny\n\nRun: `torchrun --nproc_per_node=8 train_gpt.py`\n"


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def _submission(repo: Path, folder: str, code: str, claimed: float) -> None:
    root = repo / folder
    root.mkdir(parents=True)
    (root / "train_gpt.py").write_text(code)
    (root / "README.md").write_text(README)
    (root / "submission.json").write_text(json.dumps({"name": folder, "val_bpb": claimed}))


def _pull(repo: Path, number: int, write: Callable[[], object]) -> str:
    """A branch off main with one commit, its head stored as refs/pull/<number>/head."""
    _git(repo, "checkout", "-q", "-b", f"pr{number}", "main")
    write()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"pr {number}")
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", f"refs/pull/{number}/head", head)
    _git(repo, "checkout", "-q", "main")
    return head


def _binary_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"\0\1\2" * 100)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "challenge"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("challenge\n")
    _submission(repo, "records/track_10min_16mb/merged", LEGAL, 1.3)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _pull(repo, 1, lambda: _submission(repo, "records/track_10min_16mb/legal", LEGAL, 1.21))
    _pull(repo, 2, lambda: _submission(repo, "records/track_10min_16mb/illegal", ILLEGAL, 1.05))
    # the same folder, byte for byte, resubmitted in a second pull request
    _pull(repo, 3, lambda: _submission(repo, "records/track_10min_16mb/illegal", ILLEGAL, 1.05))
    _pull(repo, 4, lambda: (repo / "README.md").write_text("a leaderboard edit\n"))
    _pull(repo, 5, lambda: _binary_folder(repo / "records/track_10min_16mb/binary"))
    # a ref whose commit is gone (a pruned pull request), written as git would store it
    (repo / ".git/refs/pull/6").mkdir(parents=True)
    (repo / ".git/refs/pull/6/head").write_text("1" * 40 + "\n")
    return repo


class _Recorded(Progress):
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.steps: list[str] = []

    def start(self, phase: str, total: int) -> None:
        self.phases.append((phase, total))

    def advance(self) -> None:
        self.steps.append(self.phases[-1][0])


def _rows(repo: Path, cache: Path, progress: Progress | None = None) -> tuple[Backlog, BacklogReport]:
    backlog = audit_backlog(repo, "refs/pull/*/head", CheckOptions(), jobs=1, cache_dir=cache, progress=progress)
    return backlog, backlog_report(backlog, ReviewFilters(), "test", "pr")


def test_each_pull_request_is_a_row_with_its_verdict(repo: Path, tmp_path: Path) -> None:
    backlog, report = _rows(repo, tmp_path / "cache")
    by_number = {row.number: row for row in report.rows}
    assert [row.number for row in report.rows] == [1, 2, 3, 4, 5, 6]
    legal = by_number[1]
    assert legal.folder == "records/track_10min_16mb/legal"
    assert legal.verdict in (Verdict.PASS, Verdict.REVIEW)
    assert legal.claimed_bpb == 1.21
    illegal = by_number[2]
    assert illegal.verdict is Verdict.FAIL
    assert "PG101" in illegal.error_rules
    assert illegal.first_finding is not None and illegal.first_finding.line == 22
    assert illegal.commit == _git(repo, "rev-parse", "refs/pull/2/head")
    assert by_number[3].verdict is Verdict.FAIL and by_number[3].error_rules == illegal.error_rules
    assert by_number[4].verdict is None and by_number[4].folder == ""
    assert "no submission folder" in by_number[4].message
    assert by_number[5].verdict is Verdict.ERROR and "binary files only" in by_number[5].message
    assert by_number[6].verdict is Verdict.ERROR and "no longer resolves" in by_number[6].message
    # the merged folder on main is not part of any pull request's change
    assert all(row.folder != "records/track_10min_16mb/merged" for row in report.rows)


def test_the_same_folder_in_two_pull_requests_is_audited_once(repo: Path, tmp_path: Path) -> None:
    progress = _Recorded()
    backlog, _report = _rows(repo, tmp_path / "cache", progress)
    assert progress.phases == [("reading pull requests", 6), ("auditing folders", 3)]
    assert progress.steps.count("reading pull requests") == 6 and progress.steps.count("auditing folders") == 3
    assert backlog.stats.folders == 4  # legal, illegal twice, binary
    assert backlog.stats.unique_folders == 3
    assert backlog.stats.analyzed == 2  # the binary-only folder needs no analysis
    warm, report = _rows(repo, tmp_path / "cache")
    assert warm.stats.analyzed == 0 and warm.stats.from_cache == 2
    assert {row.number: row.verdict for row in report.rows}[2] is Verdict.FAIL


def test_cli_json_sorted_by_score_and_exit_code(repo: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GOLF_HARNESS_CACHE", str(tmp_path / "cache"))
    code = main(["--pull-requests", "--format", "json", "--jobs", "1"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["schema"] == "golf-check/1"
    claimed = [entry["claimed_val_bpb"] for entry in data["submissions"]]
    assert claimed[:3] == [1.05, 1.05, 1.21]  # best claimed score first: the failing resubmissions
    first = data["submissions"][0]
    assert first["verdict"] == "fail" and first["pull_request"] in (2, 3)
    assert first["ref"] == f"refs/pull/{first['pull_request']}/head" and len(first["commit"]) == 40
    assert any(finding["rule"] == "PG101" for finding in first["findings"])
    others = {entry["pull_request"]: entry for entry in data["pull_requests_without_submission"]}
    assert others[4]["verdict"] is None and others[6]["verdict"] == "error"
    assert data["summary"]["unique_folders"] == 3


def test_markdown_and_text_tables(repo: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GOLF_HARNESS_CACHE", str(tmp_path / "cache"))
    main(["--pull-requests", "--format", "markdown", "--sort", "verdict", "--jobs", "1"])
    markdown = capsys.readouterr().out
    rows = [line for line in markdown.splitlines() if line.startswith("| #")]
    assert rows[0].startswith("| #2 |") and "fail" in rows[0] and "PG101" in rows[0]
    main(["--pull-requests", "refs/pull/1/*", "--jobs", "1"])
    text = capsys.readouterr().out
    assert "records/track_10min_16mb/legal" in text and "illegal" not in text


def test_missing_merge_base_is_a_row(repo: Path, tmp_path: Path) -> None:
    orphan = _git(repo, "commit-tree", _git(repo, "rev-parse", "refs/pull/1/head^{tree}"), "-m", "orphan")
    _git(repo, "update-ref", "refs/pull/7/head", orphan)
    _backlog, report = _rows(repo, tmp_path / "cache")
    row = next(row for row in report.rows if row.number == 7)
    assert row.verdict is Verdict.ERROR and "no merge base" in row.message


def test_a_merged_pull_request_is_compared_with_the_branch_it_was_merged_into(repo: Path, tmp_path: Path) -> None:
    _pull(repo, 8, lambda: _submission(repo, "records/track_10min_16mb/merged_later", ILLEGAL, 1.1))
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge pr 8", "pr8")
    _backlog, report = _rows(repo, tmp_path / "cache")
    row = next(row for row in report.rows if row.number == 8)
    assert row.folder == "records/track_10min_16mb/merged_later" and row.verdict is Verdict.FAIL


def test_a_ref_to_an_annotated_tag_reads_the_commit_it_names(repo: Path, tmp_path: Path) -> None:
    _git(repo, "tag", "-a", "-m", "tagged", "v1", "refs/pull/2/head")
    _git(repo, "update-ref", "refs/pull/9/head", _git(repo, "rev-parse", "v1"))
    _backlog, report = _rows(repo, tmp_path / "cache")
    row = next(row for row in report.rows if row.number == 9)
    assert row.commit == _git(repo, "rev-parse", "refs/pull/2/head") and row.verdict is Verdict.FAIL


def test_a_shallow_clone_without_the_merge_base_gives_rows_not_a_stop(repo: Path, tmp_path: Path) -> None:
    (repo / "README.md").write_text("main moved on\n")
    _git(repo, "commit", "-q", "-am", "main moves on")
    shallow = tmp_path / "shallow"
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    _git(shallow, "fetch", "-q", "--depth", "1", "origin", "+refs/pull/1/head:refs/pull/1/head")
    _backlog, report = _rows(shallow, tmp_path / "cache")
    assert [(row.number, row.verdict) for row in report.rows] == [(1, Verdict.ERROR)]
    assert "no merge base" in report.rows[0].message and "shallow" in report.rows[0].message


def test_not_a_git_repository_is_one_line_and_its_own_exit_code(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert main(["--pull-requests"]) == EXIT_NOT_A_REPOSITORY
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not inside a git repository" in err


def test_html_page_has_the_rows_and_the_cited_rule_pages(repo: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GOLF_HARNESS_CACHE", str(tmp_path / "cache"))
    page = tmp_path / "backlog.html"
    assert main(["--pull-requests", "--format", "html", "--output", str(page), "--jobs", "1"]) == 1
    html = page.read_text(encoding="utf-8")
    assert "golf-check backlog" in html
    assert '<span class="badge verdict-fail">FAIL</span>' in html
    assert '<a href="#rule-PG101">PG101</a>' in html and 'id="rule-PG101"' in html
    assert "<code>records/track_10min_16mb/legal</code>" in html
    assert html.index("records/track_10min_16mb/illegal") < html.index("records/track_10min_16mb/legal")


def test_sarif_is_refused_with_pull_requests(repo: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(repo)
    assert main(["--pull-requests", "--format", "sarif"]) == 2
    assert "--pull-requests prints" in capsys.readouterr().err
