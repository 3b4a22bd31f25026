"""The pre-commit hook (``.pre-commit-hooks.yaml``): audit the submission folders that hold the
staged files.

Why in the CLI package: it reads argv and runs golf-check's command line, so it sits beside
``check.py``; the library module ``harness.gate`` only maps files to folders and never imports
the CLI back.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.check import main as check_main
from harness.gate import folders_for_files


def main(argv: list[str] | None = None) -> int:
    """Options for golf-check must be written ``--name=value``: pre-commit puts the hook's
    ``args`` before the file names, so a separate value would be taken for a file."""
    files = sys.argv[1:] if argv is None else argv
    options = [f for f in files if f.startswith("-")]
    folders = folders_for_files(Path.cwd(), [f for f in files if not f.startswith("-")])
    if not folders:
        return 0
    return check_main([*options, *(str(folder) for folder in folders)])


if __name__ == "__main__":
    sys.exit(main())
