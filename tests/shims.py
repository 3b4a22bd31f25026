"""Wrap Python source text into the self-extracting shim shapes real submissions ship.

Used by the unwrap/loader tests and by other fixture matrices (each illegal rule variant is
also checked wrapped). Every helper returns *source text* that would exec the original if it
were run; no test ever runs it. The line each chain sits on is fixed and documented, so tests
can assert exact origins (``decoded from train_gpt.py:<line> via …``).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import zlib
from pathlib import Path

RAW_LZMA2_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def wrap_lzma_b85(text: str) -> str:
    """Two lines; the chain is on line 2: ``b85decode → lzma.decompress``."""
    payload = base64.b85encode(lzma.compress(text.encode("utf-8"))).decode("ascii")
    return f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{payload}")))\n'


def wrap_raw_lzma2(text: str) -> str:
    """Raw LZMA2 stream with an explicit literal filter chain; the chain is on line 3:
    ``b85decode → lzma.decompress``."""
    compressed = lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_RAW, filters=RAW_LZMA2_FILTERS)
    payload = base64.b85encode(compressed).decode("ascii")
    return (
        "import lzma\n"
        "from base64 import b85decode as d\n"
        f'exec(lzma.decompress(d("{payload}"),format=lzma.FORMAT_RAW,'
        'filters=[{"id":lzma.FILTER_LZMA2,"preset":9|lzma.PRESET_EXTREME}]).decode())\n'
    )


def wrap_split_literal(text: str, piece: int = 76) -> str:
    """zlib + base64 split over many adjacent literals (one per line), assigned to a name,
    decoded into another name and then compiled and exec'd. The chain is on line
    ``4 + number_of_pieces`` (see ``split_literal_chain_line``): ``b64decode → zlib.decompress``."""
    payload = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    pieces = [payload[i : i + piece] for i in range(0, len(payload), piece)] or [""]
    lines = ["import zlib", "import base64", "_blob = ("]
    lines += [f'    "{chunk}"' for chunk in pieces]
    lines += [")", "_src = zlib.decompress(base64.b64decode(_blob)).decode('utf-8')"]
    lines += ["exec(compile(_src, 'train_gpt.py', 'exec'))"]
    return "\n".join(lines) + "\n"


def split_literal_chain_line(text: str, piece: int = 76) -> int:
    """The line of the decode chain in ``wrap_split_literal(text, piece)``."""
    wrapped = wrap_split_literal(text, piece)
    return next(i for i, line in enumerate(wrapped.splitlines(), 1) if line.startswith("_src ="))


def wrap_gzip_b64(text: str) -> str:
    """One line; the chain is on line 1: ``b64decode → gzip.decompress``."""
    payload = base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")
    return f'import gzip,base64;exec(gzip.decompress(base64.b64decode(b"{payload}")).decode())\n'


def wrap_bz2_hex(text: str) -> str:
    """Hex via ``bytes.fromhex``; the chain is on line 2: ``bytes.fromhex → bz2.decompress``."""
    payload = bz2.compress(text.encode("utf-8")).hex()
    return f'import bz2\nexec(bz2.decompress(bytes.fromhex("{payload}")))\n'


def wrap_nested(text: str) -> str:
    """Two levels: an lzma/base85 shim (chain on line 2) whose decoded code is a
    split-literal zlib/base64 shim of ``text``."""
    return wrap_lzma_b85(wrap_split_literal(text))


SIBLING_SHIM = 'exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())\n'


def write_sibling_shim(folder: Path, text: str) -> None:
    """``train_gpt.py`` runs ``train_gpt_decode.py`` (which holds ``text``) from the same folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_text(SIBLING_SHIM, encoding="utf-8")
    (folder / "train_gpt_decode.py").write_text(text, encoding="utf-8")
