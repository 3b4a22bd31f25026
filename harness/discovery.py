"""Which folders under the paths given to golf-check are submissions.

Why not "every folder holding a ``train_gpt.py``": real records name their script after the
idea (``train_gpt_v5.py``, ``train.py``), and some pull requests changed the script outside
their records folder, leaving README, ``submission.json`` and logs only — those still deserve a
report (the package checks, and a warning that the code could not be checked). So a folder is
a submission when it documents one:

- **strong** marks: a ``train_gpt.py`` or a ``submission*.json`` file directly inside;
- **weak** marks: a README, a training log (``*.log``, or a ``*.txt`` that is not a
  requirements/licence file) or a Python file directly inside.

A folder with a strong mark is a submission; a folder with only weak marks is one unless a
folder below it has a strong mark (then it is an index — a tree's README — and the search goes
on below it). A folder named on the command line that holds files but no marked folder is
still audited (only a run script or a write-up: the package checks say what is missing); inside
a tree such a folder is not a submission. The search stops at the first submission on each branch, so a submission's own
subfolders (helpers, a copy of an earlier version) are never counted twice. Symlinked folders
and hidden or tool folders are never entered.

Errors (documented choice): a path that does not exist, or a file that is not a ``.py`` file,
is a ``UsageError`` (exit 2); an existing folder with no submission at or below it is a
``HarnessError`` (exit 3: the input is not a submission).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError, UsageError

SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv"})
_NOT_LOGS = frozenset({"requirements.txt", "license.txt", "licence.txt", "constraints.txt"})
_LOG_HEAD_BYTES = 64 * 1024
_LOG_LINE = re.compile(r"\b(?:val_bpb|val_loss|train_loss)\b|\bstep[:= ]\s*\d")
_WHAT_COUNTS = "a README, submission.json, a training log or Python code"


def discover_submissions(paths: list[Path]) -> list[Path]:
    """A ``.py`` file is itself; a folder is searched as described in the module docstring.
    Results keep the order of ``paths`` (each tree sorted), without duplicates."""
    found: list[Path] = []
    for path in paths:
        if not os.path.lexists(path):
            raise UsageError(f"{path}: no such file or folder")
        if path.is_file():
            if path.suffix != ".py":
                raise UsageError(f"{path}: not a submission folder or a .py file")
            found.append(path)
        elif path.is_dir():
            below = _submissions_in(path)
            if not below and _holds_a_file(path):
                below = [path]  # named on the command line: the user says it is one
            if not below:
                raise HarnessError(f"{path}: no submission folder at or below it ({_WHAT_COUNTS})")
            found += below
        else:
            raise UsageError(f"{path}: not a submission folder or a .py file")
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def folder_marks(folder: Path, names: list[str]) -> tuple[bool, bool]:
    """(strong, weak) marks of ``folder`` holding the regular files ``names``. A ``*.txt`` file
    is a log mark only when its head reads like a training log (notes are not)."""
    strong = weak = False
    texts: list[str] = []
    for name in names:
        lower = name.lower()
        suffix = PurePosixPath(lower).suffix
        if name == "train_gpt.py" or (lower.startswith("submission") and suffix == ".json"):
            strong = True
        elif lower.startswith("readme") or suffix in (".py", ".log"):
            weak = True
        elif suffix == ".txt" and lower not in _NOT_LOGS:
            texts.append(name)
    if not strong and not weak:
        weak = any(_reads_like_a_log(folder / name) for name in texts[:20])
    return strong, weak


def _reads_like_a_log(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(_LOG_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return _LOG_LINE.search(head) is not None


def _submissions_in(root: Path) -> list[Path]:
    """One walk collects every folder's marks; then the tree is read from the top, stopping at
    the first submission of each branch (linear in the tree's size)."""
    marks: dict[Path, tuple[bool, bool]] = {}
    children: dict[Path, list[Path]] = {}
    for directory, subfolders, files in os.walk(root, followlinks=False):
        base = Path(directory)
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in SKIPPED_FOLDERS and not name.startswith(".") and not (base / name).is_symlink()
        )
        children[base] = [base / name for name in subfolders]
        marks[base] = folder_marks(base, [name for name in files if _is_regular(base / name)])
    strong_below: set[Path] = set()
    for folder, (strong, _weak) in marks.items():
        if strong:
            strong_below.update(ancestor for ancestor in folder.parents if ancestor in marks)
    found: list[Path] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        strong, weak = marks.get(folder, (False, False))
        if strong or (weak and folder not in strong_below):
            found.append(folder)
        else:
            pending.extend(children.get(folder, []))
    return sorted(found)


def _holds_a_file(folder: Path) -> bool:
    for directory, subfolders, files in os.walk(folder, followlinks=False):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS and not name.startswith(".")]
        if any(_is_regular(Path(directory) / name) for name in files):
            return True
    return False


def _is_regular(path: Path) -> bool:
    """A regular file, or a symlink to one (the loader decides later whether it may read it)."""
    try:
        return path.is_file()
    except OSError:
        return False
