"""The pull-request gate: which submission folders a diff touches, and PG407 for the diff.

Why a separate module: the challenge's rule for pull requests ("only add a new folder to the
appropriate /records subfolder") is about the change, not about any folder's contents, so it
is judged here from ``git diff --name-status`` and the folders it names are handed to the
ordinary audit. Only git is run as a subprocess; nothing from the repository is executed.

``folders_for_files`` serves the pre-commit hook (``harness/cli/precommit.py``), which maps the
staged files to their ``records/<track>/<name>/`` folders.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.catalog import finding
from harness.errors import HarnessError, UsageError
from harness.findings import Finding

RECORDS_DIR = "records"
_GIT_TIMEOUT_S = 60


@dataclass
class ChangedSelection:
    folders: list[Path] = field(default_factory=list)  # absolute, existing in the work tree
    findings: list[Finding] = field(default_factory=list)  # PG407 for the diff as a whole


@dataclass(frozen=True)
class Change:
    status: str  # A, M, D, R, C, T (first letter of git's status)
    path: str


def _git(repo_root: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise HarnessError("git is not installed: --changed needs git") from None
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise HarnessError(f"git {args[0]} failed: {exc.__class__.__name__}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[0]
        raise HarnessError(f"git {args[0]} failed: {reason}")
    return result.stdout


def _split_range(diff_range: str) -> tuple[str, str, bool]:
    """``BASE...HEAD`` (compare with the merge base, as a pull request does) or ``BASE..HEAD``."""
    for separator, symmetric in (("...", True), ("..", False)):
        if separator in diff_range:
            base, head = diff_range.split(separator, 1)
            if base and head and not base.startswith("-") and not head.startswith("-"):
                return base, head, symmetric
    raise UsageError(f"--changed expects BASE...HEAD, got '{diff_range}'")


def changed_paths(repo_root: Path, diff_range: str) -> tuple[list[Change], str]:
    """Changes in the range and the commit they are compared against (the merge base for
    ``...``), so "existing folder" means existing before this pull request."""
    base, head, symmetric = _split_range(diff_range)
    if not repo_root.is_dir():
        raise HarnessError(f"--changed: {repo_root} is not a directory")
    _git(repo_root, "rev-parse", "--is-inside-work-tree")
    compared = _git(repo_root, "merge-base", base, head).strip() if symmetric else base
    output = _git(repo_root, "diff", "--name-status", "-z", "--no-renames", f"{compared}..{head}", "--")
    fields = [f for f in output.split("\0") if f]
    changes = [Change(status=fields[i][:1], path=fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
    return changes, compared


def submission_folder_of(path: str) -> str | None:
    """``records/<track>/<name>`` for a path inside a submission folder, else None."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 4 and parts[0] == RECORDS_DIR:
        return "/".join(parts[:3])
    return None


def _existed_at(repo_root: Path, commit: str, folder: str) -> bool:
    listing = _git(repo_root, "ls-tree", "--name-only", commit, "--", folder)
    return bool(listing.strip())


def _pg407(path: str, message: str) -> Finding:
    return finding("PG407", path, 0, message)


def select_changed(repo_root: Path, diff_range: str) -> ChangedSelection:
    """Folders to audit for a pull request's diff, and PG407 findings for its shape: every
    change must add files to exactly one new ``records/<track>/<name>/`` folder."""
    repo_root = repo_root.resolve()
    changes, compared = changed_paths(repo_root, diff_range)
    selection = ChangedSelection()
    touched: dict[str, list[Change]] = {}
    for change in changes:
        folder = submission_folder_of(change.path)
        if folder is None:
            selection.findings.append(
                _pg407(
                    change.path,
                    f"changes {change.path} outside records/<track>/<name>/: a submission pull request "
                    "may only add one new records folder",
                )
            )
        else:
            touched.setdefault(folder, []).append(change)
    for folder, folder_changes in sorted(touched.items()):
        if _existed_at(repo_root, compared, folder):
            kinds = "".join(sorted({c.status for c in folder_changes}))
            selection.findings.append(
                _pg407(
                    folder,
                    f"modifies the existing submission folder {folder} ({kinds}): records are immutable once "
                    "merged; a new run needs a new folder and pull request",
                )
            )
        if (repo_root / folder).is_dir():
            selection.folders.append(repo_root / folder)
    if len(touched) > 1:
        selection.findings.append(
            _pg407(
                "",
                f"the diff touches {len(touched)} submission folders ({', '.join(sorted(touched))}): "
                "one pull request per submission",
            )
        )
    return selection


def folders_for_files(repo_root: Path, files: list[str]) -> list[Path]:
    """Existing submission folders holding any of ``files`` (paths relative to repo_root)."""
    folders = {submission_folder_of(PurePosixPath(Path(f).as_posix()).as_posix()) for f in files}
    return [repo_root / f for f in sorted(x for x in folders if x) if (repo_root / f).is_dir()]
