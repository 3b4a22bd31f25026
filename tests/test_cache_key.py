"""The result cache key changes with everything an analysis depends on beyond the submission:
the tool's version, Python's and libcst's (a new parser or code generator may give other
trees and lines, so a cached verdict from another version must not be served)."""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path

import pytest

import harness
from harness.check import cache
from harness.check.cache import CheckCache
from harness.check.context import CheckOptions


def _key(tmp_path: Path) -> str:
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    (folder / "train_gpt.py").write_text("x = 1\n", encoding="utf-8")
    return CheckCache(tmp_path / "cache", CheckOptions(), "catalog").key_for(folder)


def test_the_versions_in_the_key_are_the_running_ones() -> None:
    versions = cache.dependency_versions()
    assert versions == f"{platform.python_implementation()} {platform.python_version()}; libcst {version('libcst')}"


@pytest.mark.parametrize(
    ("owner", "name", "value"),
    [
        (platform, "python_version", lambda: "3.12.0"),
        (platform, "python_implementation", lambda: "PyPy"),
        (cache, "version", lambda name: "1.10.0" if name == "libcst" else version(name)),
        (harness, "__version__", "99.0"),
    ],
)
def test_another_tool_python_or_libcst_version_gives_another_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: object, name: str, value: object
) -> None:
    before = _key(tmp_path)
    assert _key(tmp_path) == before  # the key is stable while nothing changes
    monkeypatch.setattr(owner, name, value)
    assert _key(tmp_path) != before


def test_a_missing_libcst_distribution_still_gives_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a source tree without installed metadata: the key says 'unknown' instead of failing."""

    def missing(name: str) -> str:
        raise cache.PackageNotFoundError(name)

    monkeypatch.setattr(cache, "version", missing)
    assert cache.dependency_versions().endswith("; libcst unknown")
    assert len(_key(tmp_path)) == 64


def test_the_same_files_under_another_track_are_another_audit(tmp_path: Path) -> None:
    """The package checks read the track from the folder's path (a non-record track waives the
    time limit), so a cached result must not follow the files to another track; the same
    place with the same files is the same key (reported on the backlog audit, #15)."""
    keys = []
    for track in ("track_10min_16mb", "track_non_record_16mb", "track_10min_16mb"):
        folder = tmp_path / f"copy{len(keys)}" / "records" / track / "2026-03-01_same"
        folder.mkdir(parents=True)
        (folder / "train_gpt.py").write_text("x = 1\n", encoding="utf-8")
        keys.append(CheckCache(tmp_path / "cache", CheckOptions(), "catalog").key_for(folder))
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]
