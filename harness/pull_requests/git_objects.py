"""Reading a repository's objects through one long-running ``git cat-file --batch``.

Why not ``git show``/``git ls-tree`` per object: a backlog is thousands of pull requests, and a
process per tree, commit and blob would cost more than the audits they feed. One batch process
answers every read; trees and commits are parsed here (their formats are fixed by git), blobs
are streamed to disk in chunks so a large checkpoint in a folder never sits in memory. Only git
runs as a subprocess; nothing read from the repository is executed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.errors import EXIT_NOT_A_REPOSITORY, HarnessError

GIT_TIMEOUT_S = 120
TREE_MODE = "40000"
LINK_MODE = "120000"
SUBMODULE_MODE = "160000"
_CHUNK = 1 << 20
_REFUSED_NAMES = frozenset({"", ".", "..", ".git"})


class MissingObject(Exception):
    """The object is not in the repository (a pruned ref, a shallow clone's boundary)."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str  # git's octal text: 40000 tree, 100644/100755 file, 120000 link, 160000 submodule
    name: str
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


@dataclass(frozen=True)
class Commit:
    tree: str
    parents: tuple[str, ...]


def safe_name(name: str) -> bool:
    """A tree entry name git would check out: never a path separator, ``..`` or ``.git`` (a
    crafted tree object could hold them; written out they would leave the scratch folder)."""
    return name.lower() not in _REFUSED_NAMES and not any(char in name for char in "/\\\0")


def run_git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``git -C repo args``; a failure is a one-line HarnessError naming git's first line."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise HarnessError("git is not installed: --pull-requests needs git") from None
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise HarnessError(f"git {args[0]} failed: {exc.__class__.__name__}") from None
    if check and result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[0]
        raise HarnessError(f"git {args[0]} failed: {reason}")
    return result


def repository_root(start: Path) -> Path:
    """The top of the git repository holding ``start``; not being in one has its own exit code,
    so a script can tell "wrong folder" from "a submission failed"."""
    result = run_git(start, "rev-parse", "--show-toplevel", "--git-dir", check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise HarnessError(f"{start} is not inside a git repository", exit_code=EXIT_NOT_A_REPOSITORY)
    lines = result.stdout.splitlines()
    return Path(lines[0]) if lines[0] else Path(start).resolve()


class ObjectReader:
    """One ``git cat-file --batch`` process; trees and commits parsed, memoized by object ID
    (the default branch's trees are shared by every pull request)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        object_format = run_git(repo, "rev-parse", "--show-object-format", check=False).stdout.strip()
        self._oid_bytes = 32 if object_format == "sha256" else 20
        self._process = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._trees: dict[str, tuple[TreeEntry, ...]] = {}
        self._commits: dict[str, Commit] = {}

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, name: str) -> tuple[str, int]:
        """Ask for one object; returns (type, size) with the content waiting on the pipe."""
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None or "\n" in name or not name:
            raise MissingObject(name)
        try:
            stdin.write(name.encode() + b"\n")
            stdin.flush()
            header = stdout.readline().decode(errors="replace").split()
        except (BrokenPipeError, OSError):
            raise HarnessError("git cat-file stopped answering") from None
        if len(header) != 3:
            raise MissingObject(name)  # "<name> missing" or "<name> ambiguous"
        return header[1], int(header[2])

    def read(self, name: str, expected: str, limit: int = 64 << 20) -> bytes:
        """The whole object; one larger than ``limit`` is drained and refused."""
        kind, data = self._read_any(name, limit)
        if kind != expected:
            raise MissingObject(f"{name} is a {kind}, not a {expected}")
        return data

    def _read_any(self, name: str, limit: int) -> tuple[str, bytes]:
        kind, size = self._request(name)
        sink = _Capped(limit)
        self._drain(size, sink)
        if sink.over:
            raise MissingObject(f"{name} is a {kind} of {size} bytes, more than is read")
        return kind, bytes(sink.data)

    def peel(self, oid: str) -> str:
        """The commit an annotated tag points to (through tags of tags); other objects as given."""
        for _depth in range(8):
            kind, data = self._read_any(oid, 1 << 20)
            if kind != "tag":
                return oid
            oid = data.split(b"\n", 1)[0].removeprefix(b"object ").decode()
        raise MissingObject(f"{oid}: tags nested too deeply")

    def _drain(self, size: int, target: IO[bytes] | _Capped) -> bytes:
        """Copy the waiting object to ``target``; returns its first 8000 bytes."""
        stdout = self._process.stdout
        assert stdout is not None
        head = b""
        remaining = size
        while remaining:
            chunk = stdout.read(min(_CHUNK, remaining))
            if not chunk:
                raise HarnessError("git cat-file stopped answering")
            if len(head) < 8000:
                head += chunk[: 8000 - len(head)]
            target.write(chunk)
            remaining -= len(chunk)
        stdout.read(1)  # git's newline after the object
        return head

    def copy_blob(self, oid: str, target: IO[bytes]) -> bytes:
        """Stream a blob into ``target``; returns its first 8000 bytes (git's binary test)."""
        kind, size = self._request(oid)
        head = self._drain(size, target if kind == "blob" else _Capped(0))
        if kind != "blob":
            raise MissingObject(f"{oid} is a {kind}, not a blob")
        return head

    def tree(self, oid: str) -> tuple[TreeEntry, ...]:
        if oid not in self._trees:
            self._trees[oid] = self._parse_tree(self.read(oid, "tree"))
        return self._trees[oid]

    def _parse_tree(self, data: bytes) -> tuple[TreeEntry, ...]:
        entries: list[TreeEntry] = []
        position = 0
        while position < len(data):
            space = data.index(b" ", position)
            nul = data.index(b"\0", space)
            end = nul + 1 + self._oid_bytes
            entries.append(
                TreeEntry(
                    data[position:space].decode(),
                    data[space + 1 : nul].decode("utf-8", errors="surrogateescape"),
                    data[nul + 1 : end].hex(),
                )
            )
            position = end
        return tuple(entries)

    def commit(self, oid: str) -> Commit:
        if oid not in self._commits:
            tree, parents = "", []
            for line in self.read(oid, "commit").split(b"\n"):
                if not line:
                    break  # the headers end at the first blank line
                key, _, value = line.partition(b" ")
                if key == b"tree":
                    tree = value.decode()
                elif key == b"parent":
                    parents.append(value.decode())
            self._commits[oid] = Commit(tree, tuple(parents))
        return self._commits[oid]

    def entry(self, tree_oid: str, name: str) -> TreeEntry | None:
        return next((entry for entry in self.tree(tree_oid) if entry.name == name), None)


class _Capped:
    """A write target that keeps at most ``limit`` bytes and remembers whether it overflowed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.over = False

    def write(self, chunk: bytes) -> int:
        if len(self.data) + len(chunk) > self.limit:
            self.over = True
        else:
            self.data += chunk
        return len(chunk)
