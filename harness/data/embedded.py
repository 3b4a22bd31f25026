"""The embedded default data set, and choosing between it and real challenge data.

Every command must work offline on a fresh machine, so without ``--data``/``--tokenizer``
the harness builds its own small challenge-shaped data set from the standard library's
prose (:mod:`harness.data.stdlib_corpus`): a 1024-piece BPE tokenizer with the challenge's
settings, and ``fineweb_train_*.bin`` / ``fineweb_val_*.bin`` shards with BOS before every
document. The build is deterministic, so its results can be cached and compared: it lives
in a user cache folder keyed by the builder version, the Python version (the corpus is that
installation's library) and the SentencePiece version.

Concurrent processes (pytest workers, parallel CLIs) may ask for it at once: the build goes
to a private temporary folder that is renamed into place only when complete (a manifest,
written last, marks completeness), under a file lock where the platform has one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from harness.data.byte_accounting import load_tokenizer
from harness.data.shards import find_shards, read_shard_header, train_pattern, val_pattern, write_shard
from harness.data.stdlib_corpus import Document, stdlib_documents
from harness.data.tokenizer_training import BOS_ID, CHALLENGE_VOCAB_SIZE, train_bpe_tokenizer
from harness.errors import DataFormatError, UsageError

BUILDER_VERSION = "1"
TOKENIZER_NAME = "embedded_1024_bpe.model"
MANIFEST_NAME = "manifest.json"
VAL_FRACTION = 0.1
TRAIN_SHARD_TOKENS = 1_000_000
SHUFFLE_SEED = 1337


@dataclass(frozen=True)
class DataPaths:
    """Where a data set lives: a shard directory plus the tokenizer that produced it."""

    data_dir: Path
    tokenizer_path: Path
    vocab_size: int

    @property
    def train_pattern(self) -> str:
        return train_pattern(self.data_dir)

    @property
    def val_pattern(self) -> str:
        return val_pattern(self.data_dir)


def default_cache_root() -> Path:
    """``$GOLF_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/golf-harness``, else ``~/.cache/golf-harness``."""
    explicit = os.environ.get("GOLF_HARNESS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "golf-harness"


def cache_key() -> str:
    """Folder name of this builder's output; anything that changes the bytes changes the key."""
    python = "{}.{}.{}".format(*sys.version_info[:3])
    return f"embedded-v{BUILDER_VERSION}-py{python}-spm{spm.__version__}"


def split_train_val(
    documents: list[Document], val_fraction: float = VAL_FRACTION
) -> tuple[list[Document], list[Document]]:
    """Hold out a fixed set of documents for validation; shuffle training documents.

    Validation is the documents with the smallest SHA-256 of their key, which depends only
    on the documents themselves (not on their order or on the tokenizer). Validation keeps
    corpus order; training order is shuffled with a fixed seed so that a short training
    run sees a mix of topics rather than one package.
    """
    if len(documents) < 2:
        raise DataFormatError(f"corpus has {len(documents)} documents; need at least 2 to hold out validation")
    val_count = min(len(documents) - 1, max(1, round(len(documents) * val_fraction)))
    by_hash = sorted(documents, key=lambda doc: hashlib.sha256(doc.key.encode("utf-8")).hexdigest())
    val_keys = {doc.key for doc in by_hash[:val_count]}
    val = [doc for doc in documents if doc.key in val_keys]
    train = [doc for doc in documents if doc.key not in val_keys]
    random.Random(SHUFFLE_SEED).shuffle(train)
    return train, val


def _encode_with_bos(sp: spm.SentencePieceProcessor, documents: list[Document]) -> np.ndarray:
    encoded = sp.encode([doc.text for doc in documents])
    stream: list[int] = []
    for ids in encoded:
        stream.append(BOS_ID)
        stream.extend(ids)
    return np.asarray(stream, dtype=np.uint16)


def build_embedded_data(out_dir: Path, max_source_files: int | None = None) -> dict[str, object]:
    """Build tokenizer and shards into ``out_dir`` (which must exist); return the manifest.

    ``max_source_files`` builds from a prefix of the library for fast tests; the default
    reads all of it. The manifest is written last: its presence means the build finished.
    """
    documents = stdlib_documents(max_files=max_source_files)
    train_docs, val_docs = split_train_val(documents)
    proto = train_bpe_tokenizer(
        (line for doc in train_docs for line in doc.text.split("\n")), vocab_size=CHALLENGE_VOCAB_SIZE
    )
    tokenizer_path = out_dir / TOKENIZER_NAME
    tokenizer_path.write_bytes(proto)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    train_tokens = _encode_with_bos(sp, train_docs)
    val_tokens = _encode_with_bos(sp, val_docs)
    files: list[str] = [TOKENIZER_NAME]
    for index, start in enumerate(range(0, train_tokens.size, TRAIN_SHARD_TOKENS)):
        name = f"fineweb_train_{index:06d}.bin"
        write_shard(out_dir / name, train_tokens[start : start + TRAIN_SHARD_TOKENS])
        files.append(name)
    write_shard(out_dir / "fineweb_val_000000.bin", val_tokens)
    files.append("fineweb_val_000000.bin")
    manifest: dict[str, object] = {
        "builder_version": BUILDER_VERSION,
        "python": sys.version.split()[0],
        "sentencepiece": spm.__version__,
        "vocab_size": int(sp.get_piece_size()),
        "documents": {"train": len(train_docs), "val": len(val_docs)},
        "tokens": {"train": int(train_tokens.size), "val": int(val_tokens.size)},
        "files": {name: (out_dir / name).stat().st_size for name in files},
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _complete_manifest(folder: Path) -> dict[str, object] | None:
    """The folder's manifest if every file it lists is present with its recorded size."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = manifest["files"]
        if all((folder / name).stat().st_size == size for name, size in files.items()):
            return manifest
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


@contextlib.contextmanager
def _build_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive lock so that concurrent processes build once; rename-safety covers platforms without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps readers safe
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _paths_for(folder: Path, manifest: dict[str, object]) -> DataPaths:
    vocab_size = manifest.get("vocab_size")
    if not isinstance(vocab_size, int):
        raise DataFormatError(
            f"{folder / MANIFEST_NAME}: vocab_size is not an integer; delete the folder to rebuild it"
        )
    return DataPaths(data_dir=folder, tokenizer_path=folder / TOKENIZER_NAME, vocab_size=vocab_size)


def _install(built: Path, final: Path) -> None:
    """Move a finished build into place, replacing an incomplete leftover, tolerating a racing winner."""
    if final.exists() and _complete_manifest(final) is None:
        stale = final.with_name(f"{final.name}.stale-{os.getpid()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(built, final)
    except OSError:
        if _complete_manifest(final) is None:
            raise


def embedded_data(cache_dir: Path | None = None) -> DataPaths:
    """The embedded default data, built on first use and cached (see module docstring)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final = root / cache_key()
    manifest = _complete_manifest(final)
    if manifest is not None:
        return _paths_for(final, manifest)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _build_lock(root / f"{cache_key()}.lock"):
            manifest = _complete_manifest(final)
            if manifest is None:
                building = Path(tempfile.mkdtemp(prefix=f"{cache_key()}.tmp-", dir=root))
                try:
                    build_embedded_data(building)
                    _install(building, final)
                finally:
                    shutil.rmtree(building, ignore_errors=True)
                manifest = _complete_manifest(final)
    except OSError as error:
        raise DataFormatError(
            f"cannot build the embedded data in {root} ({error.strerror or error}); "
            "set GOLF_HARNESS_CACHE to a writable folder"
        ) from None
    if manifest is None:
        raise DataFormatError(f"embedded data in {final} is incomplete after building")
    return _paths_for(final, manifest)


def resolve_data(data_dir: Path | None, tokenizer: Path | None) -> DataPaths:
    """``--data DIR --tokenizer MODEL`` validated, or the embedded default when both are absent.

    Only what every command needs is checked here: the directory, well-formed validation
    shard headers, and a loadable tokenizer (whose piece count is the vocabulary size).
    Training shards are checked by the trainer when it opens them.
    """
    if data_dir is None and tokenizer is None:
        return embedded_data()
    if data_dir is None or tokenizer is None:
        raise UsageError("--data and --tokenizer must be given together (or neither, for the embedded data)")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        problem = "is not a directory" if data_dir.exists() else "does not exist"
        raise DataFormatError(f"data directory {data_dir} {problem}")
    for shard in find_shards(val_pattern(data_dir)):
        read_shard_header(shard)
    sp = load_tokenizer(Path(tokenizer))
    return DataPaths(data_dir=data_dir, tokenizer_path=Path(tokenizer), vocab_size=int(sp.get_piece_size()))
