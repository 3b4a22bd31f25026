"""Hostile submissions: each yields a finding or a clean error through the whole audit
(``analyze(load_submission(...))``), never an exception, and nothing is executed."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

from harness.check.engine import analyze
from harness.findings import Finding, Severity, Verdict, verdict_for
from harness.loader import MAX_SOURCE_BYTES, load_submission
from tests.shims import wrap_lzma_b85, wrap_split_literal, write_sibling_shim

GIGABYTE = 1 << 30


def _audit(folder: Path) -> list[Finding]:
    return analyze(load_submission(folder))


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "submission"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def _zlib_zero_bomb(size: int) -> bytes:
    """A valid zlib stream of ``size`` zero bytes built in milliseconds: after a full flush
    the compressor state repeats, so one 1 MiB block is repeated; the Adler-32 of n zeros
    is (n mod 65521) << 16 | 1."""
    megabyte = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressor.compress(megabyte)
    compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(megabyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    ending = compressor.flush(zlib.Z_FINISH)
    adler = ((size % 65521) << 16) | 1
    return b"\x78\xda" + block * (size >> 20) + ending + adler.to_bytes(4, "big")


def test_syntax_error_in_entry_and_helper(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"train_gpt.py": "def main(:\n    pass\n", "helper.py": "x = (\n"})
    findings = _audit(folder)
    pg000 = sorted((f.file, f.severity) for f in findings if f.rule == "PG000" and "parse" in f.message)
    assert pg000 == [("helper.py", Severity.WARNING), ("train_gpt.py", Severity.ERROR)]
    alone = analyze(load_submission(folder / "train_gpt.py"))
    assert [(f.rule, f.severity, f.file) for f in alone] == [("PG000", Severity.ERROR, "train_gpt.py")]
    assert verdict_for(alone) is Verdict.ERROR


def test_non_utf8_bytes(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"train_gpt.py": b"x = '\xff\xfe\xfa'\nprint(x)\n"})
    findings = _audit(folder)
    assert (
        Finding(
            "PG000",
            Severity.WARNING,
            "train_gpt.py",
            0,
            "train_gpt.py is not valid UTF-8 and has no usable coding line; read as latin-1",
        )
        in findings
    )
    assert [s.text for s in load_submission(folder).sources] == ["x = 'ÿþú'\nprint(x)\n"]


def test_one_gigabyte_decompression_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    bomb = _zlib_zero_bomb(GIGABYTE)
    assert len(bomb) < 1_100_000
    payload = base64.b85encode(bomb).decode("ascii")
    folder = _folder(
        tmp_path, {"train_gpt.py": f'import zlib,base64\nexec(zlib.decompress(base64.b85decode("{payload}")))\n'}
    )
    findings = analyze(load_submission(folder / "train_gpt.py"))
    assert findings == [
        Finding(
            "PG000",
            Severity.ERROR,
            "train_gpt.py",
            0,
            f"could not decode train_gpt.py:2 (b85decode → zlib.decompress): "
            f"zlib output exceeds the {32 * 2**20} byte cap (decompression bomb?)",
        )
    ]
    assert verdict_for(findings) is Verdict.ERROR


def test_two_hundred_level_nested_expression(tmp_path: Path) -> None:
    """200 levels is still valid Python (CPython's limit is just above): analyzed in full."""
    nested = "x = " + "[" * 200 + "1" + "]" * 200 + "\nprint(x)\n"
    deep_calls = "y = " + "f(" * 200 + "1" + ")" * 200 + "\n"
    for text in (nested, deep_calls, wrap_lzma_b85(nested)):
        folder = _folder(tmp_path / str(len(text)), {"train_gpt.py": text})
        assert analyze(load_submission(folder / "train_gpt.py")) == []


def test_nesting_beyond_what_python_accepts_is_pg000_not_a_crash(tmp_path: Path) -> None:
    """Deeper nesting would overflow libcst's native parser (a segfault, seen at 5,000 levels);
    the ast pre-check must refuse it first, for brackets, operator chains and unary chains."""
    texts = {
        "brackets": "x = " + "[" * 5000 + "1" + "]" * 5000 + "\n",
        "plus_chain": "x = " + "+".join(["a"] * 5000) + "\n",
        "unary": "x = " + "-" * 5000 + "1\n",
    }
    for name, text in texts.items():
        folder = _folder(tmp_path / name, {"train_gpt.py": text})
        findings = analyze(load_submission(folder / "train_gpt.py"))
        assert findings == [
            Finding("PG000", Severity.ERROR, "train_gpt.py", 0, "cannot analyze train_gpt.py: nesting too deep")
        ]
        assert any(f.rule == "PG000" for f in _audit(folder))
        # Inside a shim the unwrapper already refuses the payload (it is not Python CPython accepts).
        shimmed = _folder(tmp_path / f"{name}-shim", {"train_gpt.py": wrap_lzma_b85(text)})
        findings = analyze(load_submission(shimmed / "train_gpt.py"))
        assert [(f.rule, f.severity) for f in findings] == [("PG000", Severity.ERROR)]
        assert "the decoded data is not Python" in findings[0].message


def test_symlink_out_of_the_folder_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("token = 1  # noqa\n", encoding="utf-8")
    folder = _folder(tmp_path, {"train_gpt.py": "print(1)\n"})
    (folder / "helper.py").symlink_to(outside / "secret.py")
    findings = _audit(folder)
    assert (
        Finding(
            "PG000",
            Severity.WARNING,
            "helper.py",
            0,
            "symlink file helper.py points outside the submission folder; not followed",
        )
        in findings
    )
    assert not any(f.rule == "PG001" for f in findings)


def test_ten_megabyte_files(tmp_path: Path) -> None:
    big = "x = 1\n" * (10 * 2**20 // 6 + 1)
    folder = _folder(tmp_path, {"train_gpt.py": big, "data_prep.py": big})
    findings = _audit(folder)
    size = len(big.encode())
    assert size > MAX_SOURCE_BYTES
    assert [f for f in findings if f.rule == "PG000"] == [
        Finding(
            "PG000",
            Severity.ERROR,
            "train_gpt.py",
            0,
            f"train_gpt.py is {size} bytes, over the {MAX_SOURCE_BYTES} byte limit; not analyzed",
        ),
        Finding(
            "PG000",
            Severity.WARNING,
            "data_prep.py",
            0,
            f"data_prep.py is {size} bytes, over the {MAX_SOURCE_BYTES} byte limit; not analyzed",
        ),
    ]


def test_code_that_would_delete_things_is_never_run(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("still here", encoding="utf-8")
    destroy = (
        f"import shutil\nshutil.rmtree({str(sentinel)!r})\nopen({str(sentinel / 'ran.txt')!r}, 'w').write('ran')\n"
    )
    forms = {
        "plain": {"train_gpt.py": destroy, "helper.py": destroy},
        "lzma": {"train_gpt.py": wrap_lzma_b85(destroy)},
        "split": {"train_gpt.py": wrap_split_literal(destroy)},
    }
    for name, files in forms.items():
        folder = _folder(tmp_path / name, files)
        findings = _audit(folder)
        assert not any(f.rule == "PG000" and f.severity is Severity.ERROR for f in findings)
    write_sibling_shim(tmp_path / "sibling", destroy)
    _audit(tmp_path / "sibling")
    _audit(tmp_path / "sibling" / "train_gpt.py")
    assert (sentinel / "keep.txt").read_text(encoding="utf-8") == "still here"
    assert not (sentinel / "ran.txt").exists()


def test_null_bytes_and_empty_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"train_gpt.py": b"x = 1\x00\x00\n", "empty.py": b""})
    findings = _audit(folder)
    assert [(f.rule, f.severity, f.file) for f in findings if f.rule == "PG000"] == [
        ("PG000", Severity.ERROR, "train_gpt.py")
    ]
