"""The submission model: what golf-check knows about one submission folder.

Why a separate layer: every rule family reads the same picture of the folder — the Python
sources to analyze (including code decoded from self-extracting shims, with its origin), the
native helpers listed for manual review, the run configuration documented by the submitter,
and the problems met while loading (which become findings, never crashes). Loading never
executes, imports or ``exec``s anything from the submission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.findings import Finding


@dataclass(frozen=True)
class SourceFile:
    """One Python source to analyze.

    ``display_name`` is what findings print: the relative path for files on disk
    (``train_gpt.py``, ``helpers/ngram_tilt.py``) and ``<file>[decoded#N]`` for text decoded
    from the N-th decode chain of a shim. ``origin`` explains in words where the text came
    from (e.g. ``decoded from train_gpt.py:1 via b85decode → lzma.decompress``).
    """

    display_name: str
    path: Path
    text: str
    origin: str = "file"
    decoded_depth: int = 0
    is_entry: bool = False  # the entry script (see harness/entry.py), or code decoded from it


@dataclass(frozen=True)
class Setting:
    """An environment setting the submitter documented for the run that produced the score.

    Precedence (lowest to highest): code default < README run command < ``*.sh`` script <
    training-log hyperparameter dump. ``source_kind`` is one of ``readme``, ``script``,
    ``log``, ``setdefault`` (an ``os.environ.setdefault`` line inside the code).
    """

    name: str
    value: str
    file: str
    line: int
    source_kind: str


@dataclass
class Submission:
    """A loaded submission. ``single_file`` is true when the user pointed at one ``.py``
    file: package checks (README, submission.json, logs) do not apply then."""

    root: Path
    name: str
    sources: list[SourceFile] = field(default_factory=list)
    native_files: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every regular file, relative to root
    settings: dict[str, Setting] = field(default_factory=dict)
    # other documented runs (settings.documented_alternatives), judged when ``settings`` leave code off
    alternative_settings: list[dict[str, Setting]] = field(default_factory=list)
    load_findings: list[Finding] = field(default_factory=list)
    single_file: bool = False
    # the entry script(s) harness/entry.py chose (empty: no Python file in the folder) and, when
    # it is not the conventional train_gpt.py, the sentence saying which and why
    entry_files: list[str] = field(default_factory=list)
    entry_note: str = ""

    @property
    def has_code(self) -> bool:
        """False for a folder without any Python file (its script lives outside the folder)."""
        return bool(self.entry_files)

    @property
    def entry_sources(self) -> list[SourceFile]:
        return [s for s in self.sources if s.is_entry]


DOCUMENT_READ_LIMIT = 512 * 1024  # READMEs, scripts and log heads are small; never read a huge file whole


def read_document_head(path: Path, limit: int = DOCUMENT_READ_LIMIT) -> str:
    """The first ``limit`` bytes of a submission's text file, as text; "" for a symlink (it may
    point outside the folder) or an unreadable file, so that evidence read from documents can
    never stop an audit."""
    try:
        if path.is_symlink():
            return ""
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
