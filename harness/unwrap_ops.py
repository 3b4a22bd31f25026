"""The pure decoding steps a self-extracting shim can chain, each with an output cap.

Why a table of our own functions instead of calling whatever the shim names: the checker must
never run submission code, and a shim names library functions only by text. We map the few
names that real shims use (base64/binascii/codecs decoders, lzma/zlib/gzip/bz2 decompressors)
onto implementations that stream with ``max_length`` so a decompression bomb stops at the cap
instead of filling memory.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Dictionary sizes above this are refused before any allocation: a raw LZMA2 filter chain is
# the one place a shim can ask the decoder for an arbitrary amount of memory up front.
MAX_LZMA_DICT_BYTES = 1 << 28
LZMA_MEMLIMIT = 1 << 28


class DecodeFailure(Exception):
    """A decoding step rejected its input (corrupt data, bad padding, over the size cap)."""


class OverCap(DecodeFailure):
    """The decompressed output would exceed the cap: treated as a decompression bomb."""


@dataclass(frozen=True)
class Operation:
    """One named step. ``kind`` is ``decode`` (text encodings such as base85) or
    ``decompress``; ``label`` is what the origin string prints (``b85decode``,
    ``lzma.decompress``)."""

    label: str
    kind: str
    apply: Callable[[list[object], dict[str, object], int], bytes]


def _data_arg(args: list[object], kwargs: dict[str, object], name: str = "data") -> bytes:
    value = args[0] if args else kwargs.get(name, kwargs.get("s", kwargs.get("b")))
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise DecodeFailure("string argument should contain only ASCII characters") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise DecodeFailure(f"expected bytes or str, got {type(value).__name__}")


def _checked(produce: Callable[[], bytes]) -> bytes:
    try:
        return produce()
    except DecodeFailure:
        raise
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise DecodeFailure(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _b64(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    altchars = args[1] if len(args) > 1 else kwargs.get("altchars")
    validate = bool(args[2]) if len(args) > 2 else bool(kwargs.get("validate", False))
    if isinstance(altchars, str):
        altchars = altchars.encode("ascii")
    if altchars is not None and not isinstance(altchars, (bytes, bytearray)):
        raise DecodeFailure(f"altchars must be bytes, got {type(altchars).__name__}")
    return _checked(lambda: base64.b64decode(data, altchars, validate))


def _simple(decoder: Callable[[bytes], bytes]) -> Callable[[list[object], dict[str, object], int], bytes]:
    def apply(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
        data = _data_arg(args, kwargs)
        return _checked(lambda: decoder(data))

    return apply


def _a85(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    ignorechars = kwargs.get("ignorechars", b" \t\n\r\x0b")  # the library's default
    if not isinstance(ignorechars, (bytes, bytearray)):
        raise DecodeFailure(f"ignorechars must be bytes, got {type(ignorechars).__name__}")
    foldspaces, adobe = bool(kwargs.get("foldspaces")), bool(kwargs.get("adobe"))
    return _checked(lambda: base64.a85decode(data, foldspaces=foldspaces, adobe=adobe, ignorechars=ignorechars))


def _b32(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    casefold = bool(args[1]) if len(args) > 1 else bool(kwargs.get("casefold", False))
    return _checked(lambda: base64.b32decode(data, casefold))


def _fromhex(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    value = args[0] if args else kwargs.get("string")
    if not isinstance(value, str):
        raise DecodeFailure("fromhex() argument must be str")
    return _checked(lambda: bytes.fromhex(value))


def _lzma(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    fmt = args[1] if len(args) > 1 else kwargs.get("format", lzma.FORMAT_AUTO)
    filters = args[3] if len(args) > 3 else kwargs.get("filters")
    return decompress_lzma(data, fmt, filters, cap)


def decompress_lzma(data: bytes, fmt: object, filters: object, cap: int) -> bytes:
    """Like ``lzma.decompress`` (several concatenated streams included) but capped."""
    if not isinstance(fmt, int):
        raise DecodeFailure("lzma format must be an integer constant")
    filter_chain = _checked_filters(filters)

    def new_decompressor() -> lzma.LZMADecompressor:
        if fmt == lzma.FORMAT_RAW:
            return lzma.LZMADecompressor(format=fmt, filters=filter_chain)
        return lzma.LZMADecompressor(format=fmt, memlimit=LZMA_MEMLIMIT, filters=filter_chain)

    try:
        return _stream(data, new_decompressor, cap, lzma.LZMAError, "lzma")
    except (ValueError, TypeError, MemoryError) as exc:
        raise DecodeFailure(_reason(exc)) from None


def _checked_filters(filters: object) -> list[dict[str, object]] | None:
    if filters is None:
        return None
    if not isinstance(filters, (list, tuple)) or not all(isinstance(f, dict) for f in filters):
        raise DecodeFailure("lzma filters must be a list of dicts")
    for spec in filters:
        dict_size = spec.get("dict_size", 0)
        if not isinstance(dict_size, int) or dict_size > MAX_LZMA_DICT_BYTES:
            raise DecodeFailure(f"lzma dict_size {dict_size!r} is over the {MAX_LZMA_DICT_BYTES} byte limit")
    return [dict(spec) for spec in filters]


class _Decompressor(Protocol):
    """What the streaming loop needs of lzma's, bz2's and the zlib adapter's decompressors."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /, max_length: int) -> bytes: ...


def _stream(
    data: bytes,
    new_decompressor: Callable[[], _Decompressor],
    cap: int,
    library_error: type[BaseException],
    label: str,
) -> bytes:
    """Non-empty input that decodes to nothing is corrupt (liblzma accepts stream padding)."""
    output = _members(data, new_decompressor, cap, library_error, label)
    if data and not output:
        raise DecodeFailure(f"{label}: no data decoded")
    return output


def _members(
    data: bytes,
    new_decompressor: Callable[[], _Decompressor],
    cap: int,
    library_error: type[BaseException],
    label: str,
) -> bytes:
    """Decompress member after member (``unused_data``), never asking for more than ``cap+1``
    bytes in total, and insist on a complete first member as the library functions do
    (trailing bytes that are not a valid member are ignored, also like the library)."""
    output = bytearray()
    remaining = data
    members = 0
    while True:
        decompressor = new_decompressor()
        try:
            output += decompressor.decompress(remaining, max_length=cap + 1 - len(output))
            while not decompressor.eof and len(output) <= cap:
                chunk = decompressor.decompress(b"", max_length=cap + 1 - len(output))
                if not chunk:
                    break
                output += chunk
        except (library_error, EOFError, OSError) as exc:
            if members:
                return bytes(output)
            raise DecodeFailure(f"{label}: {_reason(exc)}") from None
        if len(output) > cap:
            raise OverCap(f"{label} output exceeds the {cap} byte cap (decompression bomb?)")
        if not decompressor.eof:
            if members:
                return bytes(output)
            raise DecodeFailure(f"{label}: compressed data ended before the end-of-stream marker")
        members += 1
        remaining = decompressor.unused_data
        if not remaining or label == "zlib":
            return bytes(output)


class _ZlibAdapter:
    """Gives ``zlib.decompressobj`` the ``max_length``/``eof``/``needs_input`` surface of the
    lzma and bz2 decompressors so one streaming loop serves all of them."""

    def __init__(self, wbits: int) -> None:
        self._inner = zlib.decompressobj(wbits)
        self._pending = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        chunk = self._inner.decompress(self._pending + data, max_length)
        self._pending = self._inner.unconsumed_tail
        return chunk

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data


def _zlib(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    wbits = args[1] if len(args) > 1 else kwargs.get("wbits", zlib.MAX_WBITS)
    if not isinstance(wbits, int):
        raise DecodeFailure("zlib wbits must be an integer")
    try:
        return _stream(data, lambda: _ZlibAdapter(wbits), cap, zlib.error, "zlib")
    except ValueError as exc:
        raise DecodeFailure(f"zlib: {_reason(exc)}") from None


def _gzip(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    try:
        return _stream(data, lambda: _ZlibAdapter(16 + zlib.MAX_WBITS), cap, zlib.error, "gzip")
    except ValueError as exc:
        raise DecodeFailure(f"gzip: {_reason(exc)}") from None


def _bz2(args: list[object], kwargs: dict[str, object], cap: int) -> bytes:
    data = _data_arg(args, kwargs)
    return _stream(data, bz2.BZ2Decompressor, cap, OSError, "bz2")


_CODECS_BYTES: dict[str, tuple[str, Callable[[list[object], dict[str, object], int], bytes]]] = {
    "hex": ("decode", _simple(binascii.unhexlify)),
    "hex_codec": ("decode", _simple(binascii.unhexlify)),
    "base64": ("decode", _simple(base64.decodebytes)),
    "base_64": ("decode", _simple(base64.decodebytes)),
    "base64_codec": ("decode", _simple(base64.decodebytes)),
    "zlib": ("decompress", _zlib),
    "zip": ("decompress", _zlib),
    "zlib_codec": ("decompress", _zlib),
    "bz2": ("decompress", _bz2),
    "bz2_codec": ("decompress", _bz2),
}


def codecs_operation(args: list[object], kwargs: dict[str, object]) -> Operation | None:
    """``codecs.decode(data, "hex")`` and friends: the codec name picks the operation; a text
    codec (``"utf-8"``) is not a decoding step of a shim and returns None."""
    encoding = args[1] if len(args) > 1 else kwargs.get("encoding")
    if not isinstance(encoding, str):
        return None
    key = encoding.lower().replace("-", "_")
    if key not in _CODECS_BYTES:
        return None
    kind, apply = _CODECS_BYTES[key]
    return Operation(label=f"codecs.decode({encoding})", kind=kind, apply=lambda a, k, cap: apply(a[:1], {}, cap))


OPERATIONS: dict[str, Operation] = {
    "base64.b85decode": Operation("b85decode", "decode", _simple(base64.b85decode)),
    "base64.b64decode": Operation("b64decode", "decode", _b64),
    "base64.standard_b64decode": Operation("standard_b64decode", "decode", _simple(base64.standard_b64decode)),
    "base64.urlsafe_b64decode": Operation("urlsafe_b64decode", "decode", _simple(base64.urlsafe_b64decode)),
    "base64.decodebytes": Operation("decodebytes", "decode", _simple(base64.decodebytes)),
    "base64.a85decode": Operation("a85decode", "decode", _a85),
    "base64.b32decode": Operation("b32decode", "decode", _b32),
    "base64.b32hexdecode": Operation("b32hexdecode", "decode", _simple(base64.b32hexdecode)),
    "base64.b16decode": Operation("b16decode", "decode", _simple(lambda d: base64.b16decode(d, True))),
    "binascii.unhexlify": Operation("unhexlify", "decode", _simple(binascii.unhexlify)),
    "binascii.a2b_hex": Operation("a2b_hex", "decode", _simple(binascii.a2b_hex)),
    "binascii.a2b_base64": Operation("a2b_base64", "decode", _simple(binascii.a2b_base64)),
    "bytes.fromhex": Operation("bytes.fromhex", "decode", _fromhex),
    "bytearray.fromhex": Operation("bytearray.fromhex", "decode", _fromhex),
    "lzma.decompress": Operation("lzma.decompress", "decompress", _lzma),
    "zlib.decompress": Operation("zlib.decompress", "decompress", _zlib),
    "gzip.decompress": Operation("gzip.decompress", "decompress", _gzip),
    "bz2.decompress": Operation("bz2.decompress", "decompress", _bz2),
}

# Modules whose attributes a shim may reach through ``from M import *`` or ``__import__("M")``.
KNOWN_MODULES = frozenset({"base64", "binascii", "codecs", "lzma", "zlib", "gzip", "bz2"})


def module_constant(qualified: str) -> int | None:
    """Integer constants (``lzma.FILTER_LZMA2``, ``zlib.MAX_WBITS``) resolved by name from the
    standard modules themselves, so a filter chain written with them evaluates exactly."""
    module_name, _, attribute = qualified.rpartition(".")
    module = {"lzma": lzma, "zlib": zlib}.get(module_name)
    if module is None or not attribute.isupper():
        return None
    value = getattr(module, attribute, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
