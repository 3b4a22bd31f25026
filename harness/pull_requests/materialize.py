"""A folder's tree written out of the git objects into a private temporary folder.

Why write files at all: the loader and the cache read submissions from disk, and reusing them
keeps the audit of a pull request identical to ``golf-check <folder>`` on a checkout. Only the
folder itself is written (never a checkout of the repository), names git would refuse on
checkout are skipped, symlinks are written as links (the loader reports and never follows one
that leaves the folder) and submodules are left out, as a checkout leaves them empty.

``TreeIndex`` remembers, per tree ID, the content fingerprint the cache keys on and whether the
folder held only binary files, so a warm backlog needs no file written at all. A tree ID names
its content exactly, so an entry never goes stale; the format number covers how it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_text_atomically
from harness.pull_requests.git_objects import LINK_MODE, ObjectReader, safe_name

_INDEX_FORMAT = "2"


@dataclass(frozen=True)
class Written:
    files: int
    binary_only: bool  # files, and every one of them binary (git's test: a NUL in the head)


def write_tree(objects: ObjectReader, tree: str, target: Path) -> Written:
    """Write ``tree`` below ``target`` (created)."""
    target.mkdir(parents=True, exist_ok=True)
    files = binary = 0
    for entry in objects.tree(tree):
        if not safe_name(entry.name):
            continue
        path = target / entry.name
        if entry.is_tree:
            inner = write_tree(objects, entry.oid, path)
            files += inner.files
            binary += inner.files if inner.binary_only else 0
        elif entry.mode == LINK_MODE:
            os.symlink(objects.read(entry.oid, "blob").decode("utf-8", errors="surrogateescape"), path)
            files += 1
        elif entry.mode.startswith("100"):
            with path.open("wb") as handle:
                head = objects.copy_blob(entry.oid, handle)
            files += 1
            binary += b"\0" in head
    return Written(files, files > 0 and binary == files)


@dataclass(frozen=True)
class Indexed:
    fingerprint: str
    binary_only: bool


class TreeIndex:
    """(folder path, tree ID) → (content fingerprint, binary only), stored beside the check
    cache. The path is part of the key because the fingerprint is: the same tree under another
    track is another audit."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.directory = cache_dir / f"git-trees-{_INDEX_FORMAT}" if cache_dir is not None else None

    def _path(self, folder: str, tree: str) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(f"{folder}\0{tree}".encode()).hexdigest()
        return self.directory / key[:2] / key

    def get(self, folder: str, tree: str) -> Indexed | None:
        path = self._path(folder, tree)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Indexed(str(data["fingerprint"]), bool(data["binary_only"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, folder: str, tree: str, indexed: Indexed) -> None:
        """Atomic; an index that cannot be written only costs speed."""
        path = self._path(folder, tree)
        if path is None:
            return
        payload = json.dumps({"fingerprint": indexed.fingerprint, "binary_only": indexed.binary_only})
        with contextlib.suppress(OSError):
            write_text_atomically(path, payload)
