"""Write a file so that readers see the old content or the new, never half of it.

Why one helper: the check cache, the backlog's tree index and golf-eval's reports are read
by other processes (a parallel audit, a reviewer's browser) while they are being written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """``path.write_text(text)`` through a temporary file beside it and one rename; raises
    ``OSError`` as writing would, leaving no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise
