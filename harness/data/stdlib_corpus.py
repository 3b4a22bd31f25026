"""A real-text corpus that every Python installation already has: its standard library's prose.

The harness must run offline, so its default data cannot be downloaded. The standard library
ships megabytes of English prose — module/class/function docstrings, comments, and the
language reference topics used by ``help()`` (``pydoc_data/topics.py``). We read it by
*parsing* the ``.py`` files with :mod:`ast` (never importing them: importing arbitrary
modules runs code, is slow, and differs between platforms) in sorted path order, so the
corpus is a pure function of the installed files.

Documents are short stretches of one source file (or one help topic), cut at paragraph
boundaries, roughly the length of a web page in FineWeb, so that BOS-delimited documents
in the shards look like the challenge's.
"""

from __future__ import annotations

import ast
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIPPED_DIRECTORIES = frozenset({"site-packages", "dist-packages", "__pycache__"})
TOPICS_FILE = Path("pydoc_data") / "topics.py"
MAX_DOCUMENT_CHARS = 4000

_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Document:
    """One corpus document; ``key`` is stable across builds and decides the val split."""

    key: str
    text: str


def stdlib_root() -> Path:
    """Directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path, max_files: int | None = None) -> list[Path]:
    """Standard-library ``.py`` files in sorted relative-path order (third-party code excluded)."""
    files = sorted(
        (path for path in root.rglob("*.py") if not SKIPPED_DIRECTORIES.intersection(path.relative_to(root).parts)),
        key=lambda path: path.relative_to(root).as_posix(),
    )
    files = [path for path in files if path.relative_to(root) != TOPICS_FILE]
    return files if max_files is None else files[:max_files]


def _decode(source: bytes) -> str:
    """Decode a source file the way Python would (PEP 263 cookie), tolerating bad bytes."""
    try:
        encoding, _ = tokenize.detect_encoding(iter(source.splitlines(keepends=True)).__next__)
    except (SyntaxError, LookupError):
        encoding = "utf-8"
    try:
        return source.decode(encoding, errors="replace")
    except LookupError:
        return source.decode("utf-8", errors="replace")


def _encodable(text: str) -> str:
    """Replace lone surrogates (legal in Python string literals) that UTF-8 and SentencePiece reject."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _is_prose_comment(text: str) -> bool:
    return bool(text) and not text.startswith(("!", "-*-")) and any(char.isalpha() for char in text)


def text_blocks(source: bytes) -> list[str]:
    """Docstrings and comment paragraphs of one source file, in source order.

    Comment lines inside string literals (e.g. a ``#`` line in a docstring) are skipped so
    that no text is taken twice. Files that do not parse (Python 2 fixtures) give nothing.
    """
    try:
        with warnings.catch_warnings():  # old escape sequences in library files are not our concern
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = _decode(source).splitlines()
    in_string = bytearray(len(lines) + 2)
    blocks: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            end = min(node.end_lineno or node.lineno, len(lines) + 1)
            in_string[node.lineno : end + 1] = b"\x01" * (end + 1 - node.lineno)
        elif isinstance(node, _DOCSTRING_OWNERS):
            docstring = ast.get_docstring(node)
            if docstring and docstring.strip():
                blocks.append((node.body[0].lineno, _encodable(docstring.strip())))
    comment: list[str] = []
    comment_start = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#") and not in_string[number]:
            text = stripped.lstrip("#").strip()
            if _is_prose_comment(text):
                comment_start = comment_start or number
                comment.append(text)
                continue
        if comment:
            blocks.append((comment_start, " ".join(comment)))
            comment, comment_start = [], 0
    if comment:
        blocks.append((comment_start, " ".join(comment)))
    blocks.sort(key=lambda block: block[0])
    return [text for _, text in blocks]


def help_topics(root: Path) -> list[tuple[str, str]]:
    """The language-reference topics behind ``help('assert')`` etc., sorted by topic name.

    ``topics.py`` is a single dict literal, read with ``ast.literal_eval`` (no import).
    """
    path = root / TOPICS_FILE
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Dict):
            try:
                topics = ast.literal_eval(statement.value)
            except ValueError:
                return []
            return sorted((str(name), _encodable(text)) for name, text in topics.items() if isinstance(text, str))
    return []


def split_documents(key: str, paragraphs: list[str], max_chars: int = MAX_DOCUMENT_CHARS) -> Iterator[Document]:
    """Group consecutive paragraphs into documents of at most ``max_chars`` (one long paragraph stays whole)."""
    current: list[str] = []
    size = 0
    index = 0
    for paragraph in paragraphs:
        if current and size + len(paragraph) > max_chars:
            yield Document(f"{key}#{index}", "\n\n".join(current))
            index += 1
            current, size = [], 0
        current.append(paragraph)
        size += len(paragraph) + 2
    if current:
        yield Document(f"{key}#{index}", "\n\n".join(current))


def stdlib_documents(root: Path | None = None, max_files: int | None = None) -> list[Document]:
    """All corpus documents: source files first (path order), then help topics (name order).

    ``max_files`` limits the source files read (and drops the help topics), for quick
    reduced builds in tests.
    """
    root = root or stdlib_root()
    documents: list[Document] = []
    for path in source_files(root, max_files):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        documents.extend(split_documents(path.relative_to(root).as_posix(), text_blocks(source)))
    if max_files is None:
        for name, text in help_topics(root):
            paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
            documents.extend(split_documents(f"{TOPICS_FILE.as_posix()}:{name}", paragraphs))
    return documents
