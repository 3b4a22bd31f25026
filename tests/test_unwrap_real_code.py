"""Shim unwrapping on shapes of real submissions (issue 12): ordinary decompression helpers are
not shims, names resolve by Python's scopes, and real shims in the forms submissions ship
still decode. Every program here is a minimal reproduction written for the test."""

from __future__ import annotations

import base64
import lzma
import zlib

from harness.unwrap import unwrap_source

PROGRAM = "import os\nprint(os.environ.get('SEED', '0'))\n"


def _b85_lzma(text: str) -> str:
    return base64.b85encode(lzma.compress(text.encode())).decode()


def test_decompress_helper_over_a_parameter_is_not_a_shim() -> None:
    """#1953: an artifact serializer's ``_decompress(blob, ...)`` helper; another function of
    the file starts a buffer with ``blob = b""``. That literal is not the helper's data."""
    code = (
        "import lzma\n"
        "\n"
        "def unpack(blob, method):\n"
        "    if method == 'lzma':\n"
        "        return lzma.decompress(blob)\n"
        "    raise ValueError(method)\n"
        "\n"
        "def pack(arrays):\n"
        "    blob = b''\n"
        "    for array in arrays:\n"
        "        blob += array\n"
        "    return lzma.compress(blob)\n"
    )
    result = unwrap_source(code, "train_gpt.py")
    assert result.problems == []
    assert result.decoded == []


def test_names_resolve_by_scope() -> None:
    """Own bindings first (a literal assigned in the function decodes), then the module; a
    parameter, a loop variable or a class attribute never stands for another scope's literal."""
    payload = _b85_lzma(PROGRAM)
    in_function = (
        "import lzma, base64\n"
        "def main():\n"
        f"    data = '{payload}'\n"
        "    exec(lzma.decompress(base64.b85decode(data)))\n"
        "main()\n"
    )
    assert [d.line for d in unwrap_source(in_function, "t.py").decoded] == [4]
    module_constant = (
        f"import lzma, base64\nDATA = '{payload}'\ndef main():\n    exec(lzma.decompress(base64.b85decode(DATA)))\n"
    )
    assert [d.text for d in unwrap_source(module_constant, "t.py").decoded] == [PROGRAM]
    shadowed = (
        "import lzma, base64\n"
        f"data = '{payload}'\n"
        "def load(data):\n"
        "    return lzma.decompress(base64.b85decode(data))\n"
        "def each(items):\n"
        "    for data in items:\n"
        "        yield lzma.decompress(data)\n"
        "class Runner:\n"
        "    data = 'not a payload'\n"
        "    def run(self):\n"
        "        exec(lzma.decompress(base64.b85decode(data)))\n"
    )
    result = unwrap_source(shadowed, "t.py")
    assert result.problems == []
    # only the method reads the module's ``data``: a class body is not visible to its methods
    assert [(d.line, d.text) for d in result.decoded] == [(11, PROGRAM)]


def test_global_declaration_binds_the_module_name() -> None:
    payload = _b85_lzma(PROGRAM)
    code = (
        "import lzma, base64\n"
        "def setup():\n"
        "    global SRC\n"
        f"    SRC = '{payload}'\n"
        "def run():\n"
        "    exec(lzma.decompress(base64.b85decode(SRC)))\n"
    )
    assert [d.text for d in unwrap_source(code, "t.py").decoded] == [PROGRAM]


def test_corrupt_literal_that_is_not_executed_is_data() -> None:
    """A literal nobody executes that does not decompress is not a shim; the same literal
    executed is a problem, and so is a bomb wherever it is (its code would be hidden)."""
    corrupt = base64.b85encode(lzma.compress(PROGRAM.encode())[:-8]).decode()
    quiet = f"import lzma, base64\nVECTOR = lzma.decompress(base64.b85decode('{corrupt}'))\n"
    assert unwrap_source(quiet, "t.py").problems == []
    loud = f"import lzma, base64\nexec(lzma.decompress(base64.b85decode('{corrupt}')))\n"
    assert unwrap_source(loud, "t.py").problems == [
        "could not decode t.py:2 (b85decode → lzma.decompress): lzma: compressed data ended before the end-of-stream marker"
    ]
    bomb = base64.b85encode(zlib.compress(bytes(2 << 20))).decode()
    stored = f"import zlib, base64\nSRC = zlib.decompress(base64.b85decode('{bomb}'))\n"
    (problem,) = unwrap_source(stored, "t.py", max_bytes=1 << 20).problems
    assert "decompression bomb" in problem


def test_join_of_one_split_literal() -> None:
    """#1839: the payload is one literal split over many lines inside parentheses (so a str,
    not a tuple) and the shim joins it with ``"".join(...)``, which joins its characters."""
    payload = _b85_lzma(PROGRAM)
    pieces = "\n".join(f"    '{payload[i : i + 20]}'" for i in range(0, len(payload), 20))
    code = f"import lzma as L, base64 as B\n_DATA = (\n{pieces}\n)\nexec(L.decompress(B.b85decode(''.join(_DATA))))\n"
    result = unwrap_source(code, "train_gpt.py")
    assert result.problems == []
    assert [d.text for d in result.decoded] == [PROGRAM]


def test_minified_payload_libcst_validation_would_refuse_is_kept() -> None:
    """#1850: a minified payload with 3.12 f-strings (so ``ast`` on 3.11 refuses it) and
    ``f(x)for x in y`` without a space, which Python accepts and libcst's node validation
    refuses. It is Python, so it is kept and analyzed."""
    inner = 'd={"a":[1,2]}\nprint(f"{", ".join(str(x)for x in d["a"])}")\n'
    result = unwrap_source(
        f"import lzma, base64\nexec(lzma.decompress(base64.b85decode('{_b85_lzma(inner)}')))\n", "t.py"
    )
    assert result.problems == []
    assert [d.text for d in result.decoded] == [inner]


def test_nested_shim_in_a_312_payload_spanning_lines_is_found() -> None:
    """A decoded payload in 3.12 syntax is scanned statement by statement from its own text:
    a nested chain written over several lines (and in a function) still decodes."""
    inner = _b85_lzma(PROGRAM)
    payload = (
        'd = {"k": 1}\nprint(f"{d["k"]}")\nimport lzma, base64\n'
        "def run():\n"
        f"    code = lzma.decompress(\n        base64.b85decode('{inner}'))\n"
        "    exec(code)\n"
    )
    result = unwrap_source(
        f"import lzma, base64\nexec(lzma.decompress(base64.b85decode('{_b85_lzma(payload)}')))\n", "t.py"
    )
    assert result.problems == []
    assert [(d.text, d.line) for d in result.decoded] == [(payload, 2), (PROGRAM, 5)]
