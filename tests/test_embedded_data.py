"""Embedded default data: deterministic, challenge-shaped, safely cached; and --data/--tokenizer checks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import harness.data.embedded as embedded_module
from harness.data.byte_accounting import build_byte_luts, load_tokenizer, stream_bytes
from harness.data.embedded import (
    MANIFEST_NAME,
    TOKENIZER_NAME,
    DataPaths,
    build_embedded_data,
    cache_key,
    default_cache_root,
    embedded_data,
    resolve_data,
    split_train_val,
)
from harness.data.shards import find_shards, load_tokens, read_shard, write_shard
from harness.data.stdlib_corpus import Document, split_documents, stdlib_documents, text_blocks
from harness.errors import DataFormatError, UsageError

REDUCED_FILES = 25  # a prefix of the standard library: a full pipeline run in well under a second
CACHE_TEST_FILES = 12  # smaller still: the cache tests only need some complete build


def _reduced_build(out_dir: Path) -> dict[str, object]:
    return build_embedded_data(out_dir, max_source_files=REDUCED_FILES)


def _small_build(out_dir: Path) -> dict[str, object]:
    return build_embedded_data(out_dir, max_source_files=CACHE_TEST_FILES)


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    manifest_a = _reduced_build(first)
    manifest_b = _reduced_build(second)
    assert manifest_a == manifest_b
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert names == [TOKENIZER_NAME, "fineweb_train_000000.bin", "fineweb_val_000000.bin", MANIFEST_NAME]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_reduced_build_documents_start_with_bos(tmp_path: Path) -> None:
    manifest = _reduced_build(tmp_path)
    sp = load_tokenizer(tmp_path / TOKENIZER_NAME)
    train_docs, val_docs = split_train_val(stdlib_documents(max_files=REDUCED_FILES))
    val = read_shard(tmp_path / "fineweb_val_000000.bin")
    expected: list[int] = []
    for doc in val_docs:
        expected += [1, *sp.encode(doc.text)]
    assert val.tolist() == expected
    assert manifest["documents"] == {"train": len(train_docs), "val": len(val_docs)}
    assert manifest["tokens"] == {"train": int(read_shard(tmp_path / "fineweb_train_000000.bin").size), "val": val.size}
    written = {path.name: path.stat().st_size for path in tmp_path.iterdir() if path.name != MANIFEST_NAME}
    assert manifest["files"] == written


def test_full_embedded_data_is_challenge_shaped(embedded: DataPaths) -> None:
    manifest = json.loads((embedded.data_dir / MANIFEST_NAME).read_text())
    sp = load_tokenizer(embedded.tokenizer_path)
    assert embedded.vocab_size == sp.get_piece_size() == 1024
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert sp.id_to_piece(4 + 0x41) == "<0x41>"
    assert embedded.data_dir.name == cache_key()
    val = load_tokens(embedded.val_pattern)
    train = load_tokens(embedded.train_pattern)
    assert (val.size, train.size) == (manifest["tokens"]["val"], manifest["tokens"]["train"])
    assert 150_000 <= val.size <= 250_000
    assert 1_500_000 <= train.size <= 5_000_000
    assert [p.name for p in find_shards(embedded.train_pattern)][:2] == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
    ]
    # Every document starts with BOS and BOS occurs nowhere else (it is a control piece).
    assert val[0] == 1 and train[0] == 1
    assert int((val == 1).sum()) == manifest["documents"]["val"]
    assert int((train == 1).sum()) == manifest["documents"]["train"]
    assert int(val.max()) < 1024 and int(train.max()) < 1024
    # Byte-fallback pieces occur, so byte accounting is exercised on real text.
    assert int(((val >= 4) & (val < 260)).sum()) > 0
    luts = build_byte_luts(sp, 1024)
    first_doc_end = int(np.flatnonzero(val == 1)[1])
    doc = val[:first_doc_end]
    assert stream_bytes(doc, luts) == len(sp.decode(doc[1:].tolist()).encode("utf-8"))


def test_resolve_without_arguments_is_the_embedded_data(embedded: DataPaths) -> None:
    assert resolve_data(None, None) == embedded


def test_cache_builds_once_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def counting_build(out_dir: Path) -> dict[str, object]:
        calls.append(out_dir)
        return _small_build(out_dir)

    monkeypatch.setattr(embedded_module, "build_embedded_data", counting_build)
    first = embedded_data(tmp_path)
    again = embedded_data(tmp_path)
    assert first == again
    assert len(calls) == 1
    assert first.data_dir == tmp_path / cache_key()
    assert first.tokenizer_path == tmp_path / cache_key() / TOKENIZER_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_key(), f"{cache_key()}.lock"]


@pytest.mark.parametrize("damage", ["delete_shard", "truncate_shard", "corrupt_manifest", "no_manifest"])
def test_incomplete_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    calls: list[Path] = []

    def counting_build(out_dir: Path) -> dict[str, object]:
        calls.append(out_dir)
        return _small_build(out_dir)

    monkeypatch.setattr(embedded_module, "build_embedded_data", counting_build)
    paths = embedded_data(tmp_path)
    shard = paths.data_dir / "fineweb_val_000000.bin"
    original = shard.read_bytes()
    if damage == "delete_shard":
        shard.unlink()
    elif damage == "truncate_shard":
        shard.write_bytes(original[:-2])
    elif damage == "corrupt_manifest":
        (paths.data_dir / MANIFEST_NAME).write_text("{not json")
    else:
        (paths.data_dir / MANIFEST_NAME).unlink()
    rebuilt = embedded_data(tmp_path)
    assert len(calls) == 2
    assert rebuilt == paths
    assert shard.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_key(), f"{cache_key()}.lock"]


def test_concurrent_requests_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def counting_build(out_dir: Path) -> dict[str, object]:
        calls.append(out_dir)
        return _small_build(out_dir)

    monkeypatch.setattr(embedded_module, "build_embedded_data", counting_build)
    results: list[DataPaths] = []
    threads = [threading.Thread(target=lambda: results.append(embedded_data(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 3 and len(set(results)) == 1


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataFormatError) as caught:
        embedded_data(blocker / "cache")
    assert str(caught.value).startswith(f"cannot build the embedded data in {blocker}/cache (")
    assert str(caught.value).endswith("set GOLF_HARNESS_CACHE to a writable folder")


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLF_HARNESS_CACHE", str(tmp_path / "explicit"))
    assert default_cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("GOLF_HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "golf-harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "golf-harness"


def test_text_blocks_take_docstrings_and_comments_once() -> None:
    source = b'''#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Module summary."""
# A comment about the
# function below.
def f():
    """Function doc.

    # not a comment
    """
    x = 1  # trailing comments are code, not prose
    # ####
    return x
'''
    assert text_blocks(source) == [
        "Module summary.",
        "A comment about the function below.",
        "Function doc.\n\n# not a comment",
    ]
    assert text_blocks(b"print 'python 2'\n") == []
    # A lone surrogate is a legal escape in a literal but cannot reach SentencePiece.
    assert text_blocks(b'"""bad \\udc80 escape"""\n') == ["bad ? escape"]


def test_split_documents_by_size() -> None:
    docs = list(split_documents("m.py", ["a" * 10, "b" * 10, "c" * 30, "d" * 5], max_chars=25))
    assert docs == [
        Document("m.py#0", "a" * 10 + "\n\n" + "b" * 10),
        Document("m.py#1", "c" * 30),
        Document("m.py#2", "d" * 5),
    ]


def test_split_train_val_is_order_independent() -> None:
    documents = [Document(f"k{i}", f"text {i}") for i in range(30)]
    train, val = split_train_val(documents)
    train_reversed, val_reversed = split_train_val(documents[::-1])
    assert len(val) == 3 and len(train) == 27
    assert {doc.key for doc in val} == {doc.key for doc in val_reversed}
    assert [doc.key for doc in val] == sorted((doc.key for doc in val), key=lambda key: int(key[1:]))
    with pytest.raises(DataFormatError, match="corpus has 1 documents"):
        split_train_val(documents[:1])


def _challenge_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_shard(data / "fineweb_val_000000.bin", [1, 261, 262, 1, 270])
    return data


def test_resolve_real_data(tmp_path: Path, tiny_tokenizer_path: Path) -> None:
    data = _challenge_dir(tmp_path)
    paths = resolve_data(data, tiny_tokenizer_path)
    assert paths == DataPaths(data_dir=data, tokenizer_path=tiny_tokenizer_path, vocab_size=320)
    assert paths.val_pattern == f"{data}/fineweb_val_*.bin"
    assert paths.train_pattern == f"{data}/fineweb_train_*.bin"


def test_resolve_data_errors(tmp_path: Path, tiny_tokenizer_path: Path) -> None:
    data = _challenge_dir(tmp_path)
    with pytest.raises(UsageError, match="--data and --tokenizer must be given together"):
        resolve_data(data, None)
    with pytest.raises(UsageError, match="--data and --tokenizer must be given together"):
        resolve_data(None, tiny_tokenizer_path)
    with pytest.raises(DataFormatError, match=f"^data directory {tmp_path}/nowhere does not exist$"):
        resolve_data(tmp_path / "nowhere", tiny_tokenizer_path)
    with pytest.raises(DataFormatError, match="is not a directory$"):
        resolve_data(tiny_tokenizer_path, tiny_tokenizer_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=f"^no token shards match {empty}/fineweb_val_\\*\\.bin$"):
        resolve_data(empty, tiny_tokenizer_path)
    with pytest.raises(DataFormatError, match="unreadable"):
        resolve_data(data, tmp_path / "missing.model")
    (data / "fineweb_val_000001.bin").write_bytes(b"\x00" * 1030)
    with pytest.raises(DataFormatError, match=r"fineweb_val_000001\.bin: bad magic 0"):
        resolve_data(data, tiny_tokenizer_path)
