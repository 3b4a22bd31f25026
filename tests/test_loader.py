"""Discovery and loading: files, sources (decoded and sibling), encodings, symlinks, native
helpers, suppression comments, settings — all without executing anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.check.engine import analyze
from harness.errors import EXIT_BAD_INPUT, EXIT_USAGE, HarnessError, UsageError
from harness.findings import Finding, Severity, verdict_for
from harness.loader import decode_source_bytes, discover_submissions, load_submission
from harness.submission import Setting
from tests.shims import split_literal_chain_line, wrap_lzma_b85, wrap_nested, write_sibling_shim

PLAIN = "import os\n\nSTEPS = int(os.environ.get('ITERATIONS', '20'))\nprint(STEPS)\n"


def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def test_discovery_over_a_tree(tmp_path: Path) -> None:
    for name in ("records/track_10min/b_run", "records/track_10min/a_run", "records/other/c_run"):
        _write(tmp_path / name, {"train_gpt.py": PLAIN, "tools/train_gpt.py": PLAIN})
    _write(tmp_path / "records/.hidden/d_run", {"train_gpt.py": PLAIN})
    _write(tmp_path / "records/empty", {"notes.md": "nothing"})
    (tmp_path / "records/link").symlink_to(tmp_path / "records/other")
    found = discover_submissions([tmp_path])
    assert found == [
        tmp_path / "records/other/c_run",
        tmp_path / "records/track_10min/a_run",
        tmp_path / "records/track_10min/b_run",
    ]
    single = tmp_path / "records/other/c_run/train_gpt.py"
    assert discover_submissions([single, tmp_path / "records/other/c_run", tmp_path / "records/other"]) == [
        single,
        tmp_path / "records/other/c_run",
    ]


def test_discovery_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or folder") as missing:
        discover_submissions([tmp_path / "nope"])
    assert missing.value.exit_code == EXIT_USAGE
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="not a submission folder or a .py file"):
        discover_submissions([tmp_path / "notes.txt"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(HarnessError, match="no submission folder at or below it") as empty:
        discover_submissions([tmp_path / "empty"])
    assert empty.value.exit_code == EXIT_BAD_INPUT


def test_folder_with_helpers_native_files_and_settings(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "sub",
        {
            "train_gpt.py": PLAIN,
            "ngram_tilt.py": "import ctypes\nlib = ctypes.CDLL('./state.so')\n",
            "kernels/fused.cu": "__global__ void k() {}\n",
            "kernels/helpers/mixer.py": "X = 1  # type: ignore\n",
            "README.md": "```\nTTT_ENABLED=1 torchrun train_gpt.py\n```\n",
            "__pycache__/train_gpt.cpython-311.pyc": b"\x00",
        },
    )
    submission = load_submission(folder)
    assert submission.name == "sub" and not submission.single_file
    assert submission.files == [
        "README.md",
        "kernels/fused.cu",
        "kernels/helpers/mixer.py",
        "ngram_tilt.py",
        "train_gpt.py",
    ]
    assert [(s.display_name, s.is_entry) for s in submission.sources] == [
        ("train_gpt.py", True),
        ("kernels/helpers/mixer.py", False),
        ("ngram_tilt.py", False),
    ]
    assert submission.native_files == ["kernels/fused.cu"]
    assert submission.settings == {"TTT_ENABLED": Setting("TTT_ENABLED", "1", "README.md", 2, "readme")}
    assert submission.load_findings == [
        Finding(
            "PG002",
            Severity.INFO,
            "kernels/fused.cu",
            0,
            "native helper files listed for manual review (not analyzed): kernels/fused.cu",
        ),
        Finding(
            "PG002",
            Severity.INFO,
            "ngram_tilt.py",
            2,
            "native code built or loaded at run time (CDLL); review it by hand",
        ),
    ]


def test_nested_shim_entry_and_decoded_line_numbers(tmp_path: Path) -> None:
    inner = "import os\n\n\nx = 1  # noqa: E501\n"
    folder = _write(tmp_path / "sub", {"train_gpt.py": wrap_nested(inner)})
    submission = load_submission(folder)
    assert [(s.display_name, s.origin, s.decoded_depth, s.is_entry) for s in submission.sources] == [
        ("train_gpt.py", "file", 0, True),
        ("train_gpt.py[decoded#1]", "decoded from train_gpt.py:2 via b85decode → lzma.decompress", 1, True),
        (
            "train_gpt.py[decoded#2]",
            f"decoded from train_gpt.py[decoded#1]:{split_literal_chain_line(inner)} via b64decode → zlib.decompress",
            2,
            True,
        ),
    ]
    assert submission.sources[2].text == inner
    suppressions = [f for f in analyze(submission) if f.rule == "PG001"]
    assert suppressions == [
        Finding("PG001", Severity.INFO, "train_gpt.py[decoded#2]", 4, "suppression comment ignored: # noqa: E501")
    ]


def test_sibling_shim_folder_and_single_file(tmp_path: Path) -> None:
    write_sibling_shim(tmp_path / "sub", PLAIN + "y = 2  # golf-check: ignore PG101\n")
    for target in (tmp_path / "sub", tmp_path / "sub" / "train_gpt.py"):
        submission = load_submission(target)
        assert [(s.display_name, s.origin, s.is_entry) for s in submission.sources] == [
            ("train_gpt.py", "file", True),
            ("train_gpt_decode.py", "executed by train_gpt.py (exec of the file's text)", True),
        ]
        assert submission.files == ["train_gpt.py", "train_gpt_decode.py"]
        assert submission.load_findings == [
            Finding(
                "PG001",
                Severity.INFO,
                "train_gpt_decode.py",
                5,
                "suppression comment ignored: # golf-check: ignore PG101",
            )
        ]
    assert load_submission(tmp_path / "sub" / "train_gpt.py").single_file


def test_missing_sibling_and_missing_entry(tmp_path: Path) -> None:
    folder = _write(tmp_path / "a", {"train_gpt.py": "exec(open('gone.py').read())\n"})
    assert load_submission(folder).load_findings == [
        Finding(
            "PG000",
            Severity.ERROR,
            "train_gpt.py",
            0,
            "train_gpt.py executes gone.py, which is not a readable file of the submission",
        )
    ]
    # without train_gpt.py the folder's only Python file is its entry (issue 12: real records
    # name their script train_gpt_v5.py, train.py…; tests/test_entry_discovery.py has the shapes)
    folder = _write(tmp_path / "b", {"helper.py": PLAIN})
    submission = load_submission(folder)
    assert submission.load_findings == [
        Finding("PG000", Severity.INFO, "helper.py", 0, "entry script: helper.py (the only Python file of the folder)")
    ]
    assert [(s.display_name, s.is_entry) for s in submission.sources] == [("helper.py", True)]


def test_entry_shim_decode_failure_is_an_error(tmp_path: Path) -> None:
    shim = wrap_lzma_b85(PLAIN)
    middle = len(shim) // 2
    broken = shim[:middle] + "0000000000" + shim[middle + 10 :]
    folder = _write(tmp_path / "a", {"train_gpt.py": broken, "helper.py": broken})
    findings = load_submission(folder).load_findings
    assert [(f.rule, f.severity, f.file) for f in findings] == [
        ("PG000", Severity.ERROR, "train_gpt.py"),
        ("PG000", Severity.WARNING, "helper.py"),
    ]
    assert findings[0].message.startswith("could not decode train_gpt.py:2 (b85decode → lzma.decompress): ")


def test_encodings() -> None:
    assert decode_source_bytes("x = 'é'\n".encode()) == ("x = 'é'\n", None)
    assert decode_source_bytes(b"\xef\xbb\xbfx = 1\n") == ("x = 1\n", None)
    latin = "# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1")
    assert decode_source_bytes(latin) == ("# -*- coding: latin-1 -*-\nx = 'é'\n", None)
    assert decode_source_bytes(b"# coding: hex\nx = '\xe9'\n") == (
        "# coding: hex\nx = 'é'\n",
        "is not valid UTF-8 and has no usable coding line; read as latin-1",
    )


def test_symlinks_are_never_followed_out(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside", {"secret.py": "x = 1  # noqa\n"})
    folder = _write(tmp_path / "sub", {"train_gpt.py": PLAIN, "real_helper.py": "y = 1\n"})
    (folder / "helper.py").symlink_to(outside / "secret.py")
    (folder / "lib").symlink_to(outside)
    (folder / "alias.py").symlink_to(folder / "real_helper.py")
    (folder / "dangling.py").symlink_to(folder / "missing.py")
    submission = load_submission(folder)
    assert submission.files == ["alias.py", "real_helper.py", "train_gpt.py"]
    assert [s.display_name for s in submission.sources] == ["train_gpt.py", "alias.py", "real_helper.py"]
    assert submission.load_findings == [
        Finding(
            "PG000", Severity.WARNING, "lib", 0, "symlink folder lib points outside the submission folder; not followed"
        ),
        Finding(
            "PG000", Severity.WARNING, "dangling.py", 0, "symlink file dangling.py is a dangling symlink; not followed"
        ),
        Finding(
            "PG000",
            Severity.WARNING,
            "helper.py",
            0,
            "symlink file helper.py points outside the submission folder; not followed",
        ),
    ]


def test_entry_symlink_out_and_fifo(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside", {"train_gpt.py": PLAIN})
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "train_gpt.py").symlink_to(outside / "train_gpt.py")
    os.mkfifo(folder / "pipe.py")
    findings = load_submission(folder).load_findings
    assert findings == [
        Finding("PG000", Severity.WARNING, "pipe.py", 0, "pipe.py is not a regular file; not read"),
        Finding(
            "PG000",
            Severity.ERROR,
            "train_gpt.py",
            0,
            "symlink file train_gpt.py points outside the submission folder; not followed",
        ),
    ]


def test_load_errors_for_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or folder"):
        load_submission(tmp_path / "missing")
    (tmp_path / "data.bin").write_bytes(b"\x00")
    with pytest.raises(UsageError, match="not a submission folder or a .py file"):
        load_submission(tmp_path / "data.bin")


def test_many_suppressions_are_capped(tmp_path: Path) -> None:
    folder = _write(tmp_path / "sub", {"train_gpt.py": "".join(f"x{i} = {i}  # noqa\n" for i in range(60))})
    findings = load_submission(folder).load_findings
    assert len(findings) == 51
    assert findings[49] == Finding("PG001", Severity.INFO, "train_gpt.py", 50, "suppression comment ignored: # noqa")
    assert findings[50] == Finding("PG001", Severity.INFO, "train_gpt.py", 50, "10 more suppression comments ignored")


def test_rule_findings_in_decoded_code_point_at_decoded_lines(tmp_path: Path) -> None:
    fetch = (
        "import urllib.request\n\n\n"
        "def fetch_tokenizer():\n"
        "    return urllib.request.urlopen('https://example.com/tok.model').read()\n\n\n"
        "if __name__ == '__main__':\n"
        "    fetch_tokenizer()\n"
    )
    folder = _write(tmp_path / "sub", {"train_gpt.py": wrap_nested(fetch)})
    located = {(f.rule, f.file, f.line) for f in analyze(load_submission(folder / "train_gpt.py"))}
    assert ("PG301", "train_gpt.py[decoded#2]", 5) in located


def test_an_entry_running_code_from_outside_the_folder_is_reviewed_not_an_error(tmp_path: Path) -> None:
    """#1615's shape: the named entry execs a baseline trainer kept at an absolute path on the
    author's machine. The submitted file is analyzed; the missing code is a warning that says
    so, like a folder without code, and the verdict is review, not error."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "README.md").write_text("Run: `torchrun --nproc_per_node=8 run.py`\n")
    (folder / "run.py").write_text(
        "import os\nos.environ['SEED'] = '1'\nexec(open('/opt/work/train_gpt_base.py').read())\n"
    )
    submission = load_submission(folder)
    findings = analyze(submission)
    external = [f for f in findings if f.rule == "PG000" and "not in the submission" in f.message]
    assert [(f.severity, f.file, f.message) for f in external] == [
        (
            Severity.WARNING,
            "run.py",
            "run.py:3 executes /opt/work/train_gpt_base.py, outside the submission folder: that code is not in the "
            "submission and was not checked",
        )
    ]
    assert verdict_for(findings) == "review"
