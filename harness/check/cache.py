"""Content-hash cache of per-submission analysis results.

Why content hashes and not timestamps: a checkout or a CI cache restore changes modification
times without changing code, and a changed file must never be served a stale verdict. The key
covers all the analysis depends on: the tool version, the harness's own source, Python's and
libcst's versions, the catalog, the reviewer options and every file of the submission. A corrupt
entry is a miss. Raw findings only: the reviewer's filters are applied after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import harness
from harness.atomic import write_text_atomically
from harness.check.context import CheckOptions
from harness.findings import Finding, Severity, Step

_CACHE_FORMAT = "1"


def default_cache_dir() -> Path:
    """``check/`` under the harness cache root shared with the embedded data."""
    configured = os.environ.get("GOLF_HARNESS_CACHE")
    if configured:
        return Path(configured) / "check"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) / "golf-harness" if xdg else Path.home() / ".cache" / "golf-harness"
    return root / "check"


# Parts of the harness that cannot change an analysis result: reports, the CLI and the
# evaluation side. Leaving them out keeps the cache warm while those are edited.
_NOT_ANALYSIS = ("cli", "report", "evaluate", "data", "pull_requests")


@lru_cache(maxsize=1)
def harness_code_fingerprint() -> str:
    """SHA-256 over the Python files of the harness that take part in an analysis."""
    root = Path(harness.__file__).parent
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root)
        if relative.parts[0] in _NOT_ANALYSIS:
            continue
        digest.update(str(relative).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def libcst_version() -> str:
    try:
        return version("libcst")
    except PackageNotFoundError:
        return "unknown"


def dependency_versions() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}; libcst {libcst_version()}"


def options_fingerprint(options: CheckOptions) -> str:
    """Every option field; a path-valued option contributes its file's bytes as well."""
    parts: list[str] = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        digest = f":{_file_digest(value)}" if isinstance(value, Path) else ""
        parts.append(f"{field.name}={value!r}{digest}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}"


# records/<track>/<name>: what the package checks read from a submission's path
PLACE_PARTS = 3


def submission_fingerprint(path: Path) -> str:
    """SHA-256 over every file the loader could read for this submission: a folder's files
    (symlinks by their target text, never followed), or a ``.py`` file and the ``.py`` files
    beside it, which a sibling-file shim may run."""
    digest = hashlib.sha256()
    # and over its place: the track, from the last path parts, decides whether a record's time
    # limit applies, so the same files under another track are another audit
    digest.update(("P\0" + "/".join(path.absolute().parts[-PLACE_PARTS:]) + "\0").encode())
    if path.is_dir():
        entries: list[Path] = []
        for directory, subdirectories, files in os.walk(path, followlinks=False):
            subdirectories.sort()
            base = Path(directory)
            entries.extend(base / name for name in subdirectories if (base / name).is_symlink())
            entries.extend(base / name for name in sorted(files))
    else:
        entries = [path, *sorted(p for p in path.parent.glob("*.py") if p != path)]
        path = path.parent
    for entry in entries:
        relative = os.path.relpath(entry, path)
        if entry.is_symlink():
            digest.update(f"L\0{relative}\0{os.readlink(entry)}\0".encode())
        else:
            digest.update(f"F\0{relative}\0{_file_digest(entry)}\0".encode())
    return digest.hexdigest()


class CheckCache:
    """Maps a submission's content key to its raw findings and excerpt sources."""

    def __init__(self, directory: Path, options: CheckOptions, catalog_hash: str) -> None:
        self.directory = directory
        self._salt = "\n".join(
            (
                _CACHE_FORMAT,
                harness.__version__,
                dependency_versions(),
                harness_code_fingerprint(),
                catalog_hash,
                options_fingerprint(options),
            )
        )

    def key_for(self, submission_path: Path) -> str:
        return self.key_for_fingerprint(submission_fingerprint(submission_path))

    def key_for_fingerprint(self, fingerprint: str) -> str:
        """The key of a submission whose ``submission_fingerprint`` is already known (the
        backlog audit remembers it per git tree, so a warm run writes no file)."""
        return hashlib.sha256(f"{self._salt}\n{fingerprint}".encode()).hexdigest()

    def _entry_path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[list[Finding], dict[str, str]] | None:
        try:
            data = json.loads(self._entry_path(key).read_text(encoding="utf-8"))
            findings = [finding_from_json(item) for item in data["findings"]]
            sources = {str(name): str(text) for name, text in data["sources"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return findings, sources

    def put(self, key: str, findings: list[Finding], sources: dict[str, str]) -> None:
        """Store atomically; a cache that cannot be written only costs speed."""
        payload = json.dumps({"findings": [finding.to_json() for finding in findings], "sources": sources})
        with contextlib.suppress(OSError):
            write_text_atomically(self._entry_path(key), payload)


def finding_from_json(data: dict) -> Finding:
    return Finding(
        rule=str(data["rule"]),
        severity=Severity(data["severity"]),
        file=str(data["file"]),
        line=int(data["line"]),
        message=str(data["message"]),
        path=tuple(
            Step(file=str(step["file"]), line=int(step["line"]), note=str(step["note"])) for step in data["path"]
        ),
    )
