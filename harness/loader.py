"""Find submissions on disk and load each into a ``Submission`` without running anything.

Why the care: submissions are untrusted. Loading lists files without following symlinks
(a link out of the folder is reported, never read), reads only regular files under a size
cap, decodes bytes the way Python would (UTF-8, then the PEP 263 coding line, then latin-1
with a finding), unwraps self-extracting shims statically, and turns every problem into a
finding so the audit always completes. Nothing is imported, executed or ``exec``'d.

Which folders are submissions is ``harness/discovery.py``'s question, and which Python file of
a folder is its entry script is ``harness/entry.py``'s; a folder without any Python file still
loads (the package checks apply) with a warning that no code rule could run.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
import tokenize
from pathlib import Path

from harness.catalog import finding
from harness.discovery import SKIPPED_FOLDERS as _SKIPPED_FOLDERS
from harness.discovery import discover_submissions
from harness.entry import MAX_DOCUMENT_BYTES, choose_entries
from harness.errors import UsageError
from harness.findings import Finding
from harness.log_evidence import log_evidence
from harness.settings import collect_settings, documented_alternatives
from harness.submission import SourceFile, Submission
from harness.unwrap import unwrap_source

ENTRY = "train_gpt.py"
__all__ = ["ENTRY", "decode_source_bytes", "discover_submissions", "load_submission"]
NO_CODE_MESSAGE = (
    "no Python code in the submission folder (its script may have been changed outside it): "
    "only the package checks ran (README, submission.json, logs); no data-flow or mechanism rule could check the code"
)
MAX_SOURCE_BYTES = 8 * 2**20
MAX_LOG_BYTES = 8 * 2**20
MAX_TOTAL_SOURCE_BYTES = 64 * 2**20
MAX_FILES = 20_000
MAX_SUPPRESSION_FINDINGS = 50
NATIVE_SUFFIXES = frozenset({".c", ".cc", ".cpp", ".cxx", ".cu", ".h", ".hpp", ".cuh", ".so"})
_CODING_LINE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_SUPPRESSION = re.compile(r"#\s*(noqa\b|nosec\b|golf[-_]?check\s*:)", re.I)
_RUNTIME_NATIVE = re.compile(
    r"\b(load_inline|cpp_extension\.load|cpp_extension import load|CDLL|cdll\.LoadLibrary|cffi\.FFI|FFI\(\)\.dlopen)\b"
)


# ---- loading -----------------------------------------------------------------------------


def load_submission(path: Path) -> Submission:
    """Load a submission folder, or a single ``.py`` file (``single_file``: package checks do
    not apply; a sibling file it executes is still read from beside it)."""
    if path.is_dir():
        return _Loader(path, single_file=None).load()
    if path.is_file() and path.suffix == ".py":
        return _Loader(path.parent, single_file=path.name).load()
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or folder")
    raise UsageError(f"{path}: not a submission folder or a .py file")


class _Loader:
    def __init__(self, root: Path, single_file: str | None) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.single_file = single_file
        self.entries: tuple[str, ...] = (single_file,) if single_file else ()
        self.entry_note = ""
        self.findings: list[Finding] = []
        self.readable: dict[str, Path] = {}
        self.files: list[str] = []
        self.sources: list[SourceFile] = []
        self.loaded: set[str] = set()
        self.bytes_read = 0
        self.problem_files: set[str] = set()

    def load(self) -> Submission:
        if self.single_file is None:
            self._list_folder()
            self._choose_entries()
        else:
            self.files = [self.single_file]
            self.readable[self.single_file] = self.root / self.single_file
        for entry in self.entries:
            if entry not in self.readable:
                if entry not in self.problem_files:
                    self._problem(entry, f"no {entry} in the submission folder", entry=True)
            else:
                self._load_source(entry, is_entry=True, origin="file")
        python_files = [name for name in self.files if name.endswith(".py")] if self.single_file is None else []
        for name in python_files:
            self._load_source(name, is_entry=False, origin="file")
        native = [name for name in self.files if Path(name).suffix.lower() in NATIVE_SUFFIXES]
        if native:
            self.findings.append(
                finding(
                    "PG002",
                    native[0],
                    0,
                    "native helper files listed for manual review (not analyzed): " + ", ".join(native),
                )
            )
        self.findings += _runtime_native_findings(self.sources)
        self.findings += _suppression_findings(self.sources)
        name = self.single_file or self.root.name or str(self.root)
        settings = collect_settings(self.root, self.files, self.sources)
        if not self.entries:
            # the logs still say what ran: the reviewer's first pointers (harness/log_evidence.py)
            evidence = log_evidence(self.files, self._peek_log, settings)
            message = NO_CODE_MESSAGE + "".join(f"; {sentence}" for sentence in evidence)
            self.findings.append(finding("PG000", "", 0, message, when="no-code"))
        return Submission(
            root=self.root,
            name=name,
            sources=self.sources,
            native_files=native,
            files=self.files,
            settings=settings,
            alternative_settings=documented_alternatives(self.root, self.files, self.sources),
            load_findings=self.findings,
            single_file=self.single_file is not None,
            entry_files=list(self.entries),
            entry_note=self.entry_note,
        )

    # -- the entry script --

    def _choose_entries(self) -> None:
        """Pick the entry script(s) (``harness/entry.py``); unreadable ``.py`` files stay
        candidates, so a ``train_gpt.py`` that is a symlink out of the folder is still the
        entry — and reported as unreadable — rather than silently replaced by a helper."""
        listed = sorted(set(self.files) | {name for name in self.problem_files if name.endswith(".py")})
        choice = choose_entries(listed, self._peek)
        self.entries = choice.entries
        self.entry_note = choice.note
        # a listing problem (symlink out, not a regular file) on the chosen entry keeps its code
        # from analysis: an error, as for train_gpt.py
        self.findings = [
            finding(f.rule, f.file, f.line, f.message) if f.rule == "PG000" and f.file in self.entries else f
            for f in self.findings
        ]
        if choice.note:
            self.findings.append(finding("PG000", self.entries[0], 0, choice.note, when="entry-choice"))

    def _peek_log(self, name: str) -> str | None:
        """A whole log (up to ``MAX_LOG_BYTES``): serialization comes after the training steps."""
        path = self.readable.get(name)
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                return handle.read(MAX_LOG_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return None

    def _peek(self, name: str) -> str | None:
        """A file's text for choosing the entry: never a finding, never counted against the
        source budget (the entry is read again, properly, when loaded)."""
        path = self.readable.get(name)
        if path is None:
            return None
        limit = MAX_SOURCE_BYTES if name.endswith(".py") else MAX_DOCUMENT_BYTES
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError:
            return None
        if name.endswith(".py") and len(data) > limit:
            return None
        return data[:limit].decode("utf-8", errors="replace")

    # -- listing --

    def _list_folder(self) -> None:
        def walk_error(error: OSError) -> None:
            self._problem("", f"cannot list {error.filename}: {error.strerror}", entry=False)

        for directory, subfolders, names in os.walk(self.root, onerror=walk_error, followlinks=False):
            base = Path(directory)
            kept = []
            for sub in sorted(subfolders):
                if sub in _SKIPPED_FOLDERS:
                    continue
                if (base / sub).is_symlink():
                    self._symlink_problem(self._relative(base / sub), folder=True)
                else:
                    kept.append(sub)
            subfolders[:] = kept
            for name in sorted(names):
                if len(self.files) >= MAX_FILES:
                    self._problem("", f"more than {MAX_FILES} files; the rest were not listed", entry=False)
                    return
                self._list_file(base / name)
        self.files.sort()

    def _list_file(self, full: Path) -> None:
        relative = self._relative(full)
        try:
            info = full.lstat()
        except OSError as exc:
            self._problem(relative, f"cannot read {relative}: {exc.strerror}", entry=relative == ENTRY)
            return
        if stat.S_ISLNK(info.st_mode):
            target = os.path.realpath(full)
            if self._inside(target) and os.path.isfile(target):
                self.files.append(relative)
                self.readable[relative] = Path(target)
            else:
                self._symlink_problem(relative, folder=False)
        elif stat.S_ISREG(info.st_mode):
            self.files.append(relative)
            self.readable[relative] = full
        else:
            self._problem(relative, f"{relative} is not a regular file; not read", entry=relative == ENTRY)

    def _symlink_problem(self, relative: str, folder: bool) -> None:
        target = os.path.realpath(self.root / relative)
        where = "inside" if self._inside(target) else "outside"
        kind = "folder" if folder else "file"
        detail = "points outside the submission folder" if where == "outside" else "is a symlinked folder"
        if where == "inside" and not folder:
            detail = "is a dangling symlink"
        self._problem(relative, f"symlink {kind} {relative} {detail}; not followed", entry=relative == ENTRY)

    def _inside(self, real_path: str) -> bool:
        try:
            return os.path.commonpath([self.real_root, real_path]) == self.real_root
        except ValueError:
            return False

    def _relative(self, full: Path) -> str:
        return full.relative_to(self.root).as_posix()

    # -- reading and unwrapping --

    def _load_source(self, name: str, is_entry: bool, origin: str) -> None:
        if name in self.loaded:
            return
        self.loaded.add(name)
        text = self._read_text(name, is_entry)
        if text is None:
            return
        self.sources.append(SourceFile(name, self.readable[name], text, origin, 0, is_entry))
        result = unwrap_source(text, name)
        for number, decoded in enumerate(result.decoded, 1):
            self.sources.append(
                SourceFile(
                    display_name=f"{name}[decoded#{number}]",
                    path=self.readable[name],
                    text=decoded.text,
                    origin=decoded.origin,
                    decoded_depth=decoded.depth,
                    is_entry=is_entry,
                )
            )
        for problem in result.problems:
            self._problem(name, problem, entry=is_entry)
        for external in result.external:
            # Like a folder without code (#1615 runs a baseline kept on the author's machine):
            # what was submitted is analyzed; what runs from elsewhere is for the reviewer.
            self.findings.append(
                finding(
                    "PG000",
                    name,
                    0,
                    f"{external}: that code is not in the submission and was not checked",
                    when="external-code",
                )
            )
        for sibling in result.siblings:
            self._load_sibling(name, sibling, is_entry)

    def _load_sibling(self, executor: str, sibling: str, is_entry: bool) -> None:
        if sibling not in self.readable and self.single_file is not None:
            candidate = self.root / sibling
            if not candidate.is_symlink() and candidate.is_file() and self._inside(os.path.realpath(candidate)):
                self.readable[sibling] = candidate
                self.files.append(sibling)
        if sibling not in self.readable:
            self._problem(
                executor,
                f"{executor} executes {sibling}, which is not a readable file of the submission",
                entry=is_entry,
            )
            return
        self._load_source(sibling, is_entry=is_entry, origin=f"executed by {executor} (exec of the file's text)")

    def _read_text(self, name: str, is_entry: bool) -> str | None:
        path = self.readable[name]
        try:
            size = path.stat().st_size
            if size > MAX_SOURCE_BYTES:
                self._problem(
                    name,
                    f"{name} is {size} bytes, over the {MAX_SOURCE_BYTES} byte limit; not analyzed",
                    entry=is_entry,
                )
                return None
            if self.bytes_read + size > MAX_TOTAL_SOURCE_BYTES:
                self._problem(
                    name,
                    f"{name} not read: the submission's sources exceed {MAX_TOTAL_SOURCE_BYTES} bytes",
                    entry=is_entry,
                )
                return None
            with path.open("rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES + 1)
        except OSError as exc:
            self._problem(name, f"cannot read {name}: {exc.strerror or exc}", entry=is_entry)
            return None
        self.bytes_read += len(data)
        text, note = decode_source_bytes(data)
        if note:
            self.findings.append(finding("PG000", name, 0, f"{name} {note}", when="source-decoding"))
        return text

    def _problem(self, file: str, message: str, entry: bool) -> None:
        """Anything that keeps part of the entry's code from analysis makes the verdict
        ``error``; a problem in a helper or a document is a warning."""
        self.problem_files.add(file)
        self.findings.append(finding("PG000", file, 0, message, when=None if entry else "helper-file"))


def decode_source_bytes(data: bytes) -> tuple[str, str | None]:
    """Source bytes to text as Python reads them: UTF-8 (BOM allowed), else the PEP 263
    coding line of the first two lines, else latin-1 — with a note saying so."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    for line in data.split(b"\n", 2)[:2]:
        match = _CODING_LINE.match(line)
        if not match:
            continue
        encoding = match.group(1).decode("ascii", errors="replace")
        try:
            if codecs.lookup(encoding)._is_text_encoding:
                return data.decode(encoding), None
        except (LookupError, UnicodeDecodeError, ValueError):
            break
        break
    return data.decode("latin-1"), "is not valid UTF-8 and has no usable coding line; read as latin-1"


def _comments(text: str) -> list[tuple[int, str]]:
    """Comment tokens with their lines (so ``# noqa`` inside a string does not count); a line
    scan when the tokenizer rejects the text."""
    found: list[tuple[int, str]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found.append((token.start[0], token.string))
        return found
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return [(number, line[line.index("#") :]) for number, line in enumerate(text.splitlines(), 1) if "#" in line]


def _suppression_findings(sources: list[SourceFile]) -> list[Finding]:
    """A submitter cannot silence the audit from inside the submission: every suppression
    comment is reported (``# type: ignore`` is a typing hint, not a suppression)."""
    findings: list[Finding] = []
    hidden = 0
    for source in sources:
        if not _SUPPRESSION.search(source.text):
            continue
        for line, comment in _comments(source.text):
            match = _SUPPRESSION.search(comment)
            if not match:
                continue
            if len(findings) >= MAX_SUPPRESSION_FINDINGS:
                hidden += 1
                continue
            shown = comment[match.start() :].strip()[:80]
            findings.append(finding("PG001", source.display_name, line, f"suppression comment ignored: {shown}"))
    if hidden:
        last = findings[-1]
        findings.append(finding("PG001", last.file, last.line, f"{hidden} more suppression comments ignored"))
    return findings


def _runtime_native_findings(sources: list[SourceFile]) -> list[Finding]:
    """Native code compiled or loaded at run time is as opaque to static analysis as a
    ``.cpp`` file beside the script: list each place for manual review."""
    findings: list[Finding] = []
    for source in sources:
        if not _RUNTIME_NATIVE.search(source.text):
            continue
        for number, line in enumerate(source.text.splitlines(), 1):
            match = _RUNTIME_NATIVE.search(line)
            if match and not line.lstrip().startswith("#"):
                findings.append(
                    finding(
                        "PG002",
                        source.display_name,
                        number,
                        f"native code built or loaded at run time ({match.group(1)}); review it by hand",
                    )
                )
    return findings
