"""Which submission folders each pull request changes: the selection of ``--changed``, read
from git objects.

Why compare trees instead of running ``git diff`` per pull request: a folder
``records/<track>/<name>`` is changed exactly when its tree ID differs between the merge base
and the pull request's head, and the head's tree ID is also the folder's content hash, which is
what lets the same folder in two pull requests be audited once. The merge base is found by
walking the head's history until it meets the default branch's history (read once); an
ambiguous walk (criss-cross merges) asks ``git merge-base`` itself. A ref whose commit is gone
or a history that never meets the default branch (a shallow clone) is a pull request with a
problem, never a stop.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.gate import RECORDS_DIR
from harness.pull_requests.git_objects import MissingObject, ObjectReader, TreeEntry, run_git, safe_name

DEFAULT_REF_GLOB = "refs/pull/*/head"
_BROKEN_REF = re.compile(r"ignoring broken ref (\S+)")
_NUMBER = re.compile(r"^\d+$")
_WALK_LIMIT = 200_000


@dataclass(frozen=True)
class ChangedFolder:
    path: str  # records/<track>/<name>
    tree: str  # its tree ID at the pull request's head: the content hash


@dataclass
class PullRequest:
    ref: str
    commit: str = ""
    number: int | None = None
    folders: list[ChangedFolder] = field(default_factory=list)
    problem: str = ""  # why it could not be read; empty when it could


def pull_request_number(ref: str) -> int | None:
    """``refs/pull/123/head`` → 123: the first all-digit part of the ref's name."""
    return next((int(part) for part in ref.split("/") if _NUMBER.match(part)), None)


def list_refs(repo: Path, ref_glob: str) -> list[tuple[str, str]]:
    """(ref, object ID) for every ref matching the glob, broken refs included with no ID."""
    if not ref_glob.startswith("refs/"):
        raise UsageError(f"--pull-requests expects a ref glob such as {DEFAULT_REF_GLOB}, got '{ref_glob}'")
    result = run_git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)", ref_glob)
    refs = [(name, oid) for name, _, oid in (line.partition("\0") for line in result.stdout.splitlines())]
    refs += [(name, "") for name in _BROKEN_REF.findall(result.stderr)]
    return sorted(refs, key=lambda item: _ref_order(item[0]))


def _ref_order(ref: str) -> tuple[int, str]:
    number = pull_request_number(ref)
    return (number if number is not None else -1, ref)


def default_branch(repo: Path) -> str:
    """The clone's default branch: ``origin/HEAD`` when the remote named one, else ``HEAD``."""
    remote = run_git(repo, "symbolic-ref", "-q", "refs/remotes/origin/HEAD", check=False).stdout.strip()
    return remote or "HEAD"


class Selector:
    """Reads pull requests against one base commit, sharing the base's history and trees."""

    def __init__(self, repo: Path, objects: ObjectReader, base: str) -> None:
        self.repo = repo
        self.objects = objects
        resolved = run_git(repo, "rev-parse", "--verify", "-q", f"{base}^{{commit}}", check=False).stdout.strip()
        if not resolved:
            raise HarnessError(f"the default branch {base} does not resolve to a commit")
        self.base = resolved
        self.base_history: set[str] = set()
        self.first_parents: dict[str, str] = {}  # the default branch's own line: commit → first parent
        self.merged_tips: dict[str, str] = {}  # a merged branch's tip → the first parent of its merge
        self.base_history.update(run_git(repo, "rev-list", self.base).stdout.split())
        for line in run_git(repo, "rev-list", "--first-parent", "--parents", self.base).stdout.splitlines():
            commit, *parents = line.split()
            if parents:
                self.first_parents[commit] = parents[0]
            for tip in parents[1:]:
                self.merged_tips.setdefault(tip, parents[0])

    def read(self, ref: str, oid: str) -> PullRequest:
        pull = PullRequest(ref=ref, commit=oid, number=pull_request_number(ref))
        if not oid:
            pull.problem = "the ref is broken (it names no object); fetch the pull refs again"
            return pull
        try:
            oid = pull.commit = self.objects.peel(oid)
            head = self.objects.commit(oid)
        except MissingObject:
            pull.problem = f"the ref no longer resolves: commit {oid[:12]} is not in the repository"
            return pull
        merge_base = self.merge_base(oid)
        if merge_base is None:
            pull.problem = (
                f"no merge base with the default branch ({self.base[:12]}): a shallow clone? "
                "fetch the full history (git fetch --unshallow)"
            )
            return pull
        pull.folders = self.changed_folders(self.objects.commit(merge_base).tree, head.tree)
        return pull

    def merge_base(self, head: str) -> str | None:
        """Walk back from ``head`` until the default branch's history; one meeting point is the
        merge base, several are settled by ``git merge-base``, none means history is missing.

        A pull request already merged is compared with what the default branch was when it
        was merged (its merge commit's first parent), as its pull request page showed it; one
        fast-forwarded onto the default branch's own line with its parent (one commit assumed)."""
        if head in self.merged_tips:
            answer = run_git(self.repo, "merge-base", self.merged_tips[head], head, check=False).stdout.strip()
            return answer or None
        if head in self.first_parents:
            return self.first_parents[head]
        if head in self.base_history:
            return head
        met: list[str] = []
        seen = {head}
        pending = deque([head])
        while pending and len(seen) < _WALK_LIMIT:
            try:
                parents = self.objects.commit(pending.popleft()).parents
            except MissingObject:
                continue  # a shallow boundary: the history ends here
            for parent in parents:
                if parent in seen:
                    continue
                seen.add(parent)
                if parent in self.base_history:
                    met.append(parent)
                else:
                    pending.append(parent)
        if len(met) == 1:
            return met[0]
        if not met:
            return None
        answer = run_git(self.repo, "merge-base", self.base, head, check=False).stdout.strip()
        return answer or None

    def changed_folders(self, base_tree: str, head_tree: str) -> list[ChangedFolder]:
        """Folders ``records/<track>/<name>`` whose tree differs, as they are at the head (a
        folder removed or replaced by a file is not there to audit, as with ``--changed``)."""
        head_tracks = self._children(self._subtree(head_tree, RECORDS_DIR))
        base_tracks = self._children(self._subtree(base_tree, RECORDS_DIR))
        changed: list[ChangedFolder] = []
        for track, head_entry in sorted(head_tracks.items()):
            base_entry = base_tracks.get(track)
            if not head_entry.is_tree or head_entry == base_entry or not safe_name(track):
                continue
            before = self._children(base_entry.oid if base_entry and base_entry.is_tree else None)
            for name, entry in sorted(self._children(head_entry.oid).items()):
                if entry.is_tree and before.get(name) != entry and safe_name(name):
                    changed.append(ChangedFolder(f"{RECORDS_DIR}/{track}/{name}", entry.oid))
        return changed

    def _subtree(self, tree: str, name: str) -> str | None:
        entry = self.objects.entry(tree, name)
        return entry.oid if entry is not None and entry.is_tree else None

    def _children(self, tree: str | None) -> dict[str, TreeEntry]:
        if tree is None:
            return {}
        try:
            return {entry.name: entry for entry in self.objects.tree(tree)}
        except MissingObject:
            return {}
