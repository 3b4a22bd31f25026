"""Static shim unwrapping: every wrapper form round-trips exactly, with its origin and line;
failures are problems, never exceptions; nothing is executed."""

from __future__ import annotations

import base64
import binascii
import lzma
import zlib

import pytest

from harness.unwrap import unwrap_source
from tests.shims import (
    SIBLING_SHIM,
    split_literal_chain_line,
    wrap_bz2_hex,
    wrap_gzip_b64,
    wrap_lzma_b85,
    wrap_nested,
    wrap_raw_lzma2,
    wrap_split_literal,
)

PROGRAM = (
    "import os\n"
    "\n"
    "def main():\n"
    "    enabled = os.environ.get('TTT_ENABLED', '0') == '1'\n"
    "    print('ttt', enabled)\n"
    "\n"
    "main()\n"
)
PROGRAM_312 = 'row = {"a": 1}\nprint(f"{row["a"]}")\n'  # PEP 701: ast on 3.11 rejects it


@pytest.mark.parametrize(
    ("wrap", "line", "steps"),
    [
        (wrap_lzma_b85, 2, "b85decode → lzma.decompress"),
        (wrap_raw_lzma2, 3, "b85decode → lzma.decompress"),
        (wrap_split_literal, split_literal_chain_line(PROGRAM), "b64decode → zlib.decompress"),
        (wrap_gzip_b64, 1, "b64decode → gzip.decompress"),
        (wrap_bz2_hex, 2, "bytes.fromhex → bz2.decompress"),
    ],
)
def test_each_shim_form_round_trips_with_origin(wrap, line: int, steps: str) -> None:
    result = unwrap_source(wrap(PROGRAM), "train_gpt.py")
    assert result.problems == []
    assert [(d.text, d.origin, d.line, d.depth) for d in result.decoded] == [
        (PROGRAM, f"decoded from train_gpt.py:{line} via {steps}", line, 1)
    ]


def test_split_literal_spans_many_lines() -> None:
    shim = wrap_split_literal(PROGRAM * 20, piece=8)
    assert shim.count('\n    "') > 10
    result = unwrap_source(shim, "train_gpt.py")
    assert [d.text for d in result.decoded] == [PROGRAM * 20]


def test_nested_shims_decode_depth_first() -> None:
    result = unwrap_source(wrap_nested(PROGRAM), "train_gpt.py")
    inner_line = split_literal_chain_line(PROGRAM)
    assert [(d.origin, d.depth) for d in result.decoded] == [
        ("decoded from train_gpt.py:2 via b85decode → lzma.decompress", 1),
        (f"decoded from train_gpt.py[decoded#1]:{inner_line} via b64decode → zlib.decompress", 2),
    ]
    assert result.decoded[0].text == wrap_split_literal(PROGRAM)
    assert result.decoded[1].text == PROGRAM


def _b85_lzma(text: str) -> str:
    return base64.b85encode(lzma.compress(text.encode())).decode()


@pytest.mark.parametrize(
    "template",
    [
        'import lzma as L, base64 as B\nexec(L.decompress(B.b85decode("{p}")))\n',
        'from lzma import *\nfrom base64 import *\nexec(decompress(b85decode("{p}")))\n',
        'exec(__import__("lzma").decompress(__import__("base64").b85decode("{p}")))\n',
        'import lzma, base64\ns = "{p}"\nexec(lzma.decompress(base64.b85decode(s)).decode("utf-8"))\n',
        'import lzma, base64\nd = base64.b85decode\nexec(lzma.decompress(d(b"{p}")))\n',
        'import lzma, base64\nexec(lzma.LZMADecompressor().decompress(base64.b85decode("{p}")))\n',
    ],
    ids=["aliases", "star-imports", "dunder-import", "named-literal", "aliased-by-assignment", "decompressor-object"],
)
def test_alias_and_binding_forms(template: str) -> None:
    shim = template.replace("{p}", _b85_lzma(PROGRAM))
    result = unwrap_source(shim, "train_gpt.py")
    line = shim.splitlines().index(next(l for l in shim.splitlines() if l.startswith("exec"))) + 1
    assert [(d.text, d.origin) for d in result.decoded] == [
        (PROGRAM, f"decoded from train_gpt.py:{line} via b85decode → lzma.decompress")
    ]


def test_raw_lzma2_filter_chain_via_star_import_names() -> None:
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20, "lc": 3}]
    payload = base64.b64encode(lzma.compress(PROGRAM.encode(), format=lzma.FORMAT_RAW, filters=filters)).decode()
    shim = (
        "from lzma import *\nimport base64 as B\n"
        f'F = [{{"id": FILTER_LZMA2, "dict_size": 1 << 20, "lc": 3}}]\n'
        f'code = decompress(B.b64decode("{payload}"), format=FORMAT_RAW, filters=F)\nexec(code)\n'
    )
    for form in (shim, shim.replace("1 << 20", str(1 << 20)), shim.replace("1 << 20", "1024 * 1024")):
        result = unwrap_source(form, "train_gpt.py")
        assert [(d.text, d.origin) for d in result.decoded] == [
            (PROGRAM, "decoded from train_gpt.py:4 via b64decode → lzma.decompress")
        ]
    # A filter setting that is not a literal: the executed chain cannot be decoded and says so.
    result = unwrap_source(shim.replace("1 << 20", "SIZE"), "train_gpt.py")
    assert result.decoded == []
    assert result.problems == [
        "could not decode train_gpt.py:4 (b64decode → lzma.decompress): "
        "the executed payload is not a literal (name SIZE is not bound to a literal)"
    ]


@pytest.mark.parametrize(
    ("expression", "steps"),
    [
        (f"base64.a85decode({base64.a85encode(zlib.compress(PROGRAM.encode()))!r})", "a85decode"),
        (f'base64.b32decode("{base64.b32encode(zlib.compress(PROGRAM.encode())).decode()}")', "b32decode"),
        (
            f'base64.urlsafe_b64decode("{base64.urlsafe_b64encode(zlib.compress(PROGRAM.encode())).decode()}")',
            "urlsafe_b64decode",
        ),
        (f'binascii.unhexlify("{zlib.compress(PROGRAM.encode()).hex()}")', "unhexlify"),
        (f'codecs.decode("{zlib.compress(PROGRAM.encode()).hex()}", "hex")', "codecs.decode(hex)"),
    ],
)
def test_other_encodings(expression: str, steps: str) -> None:
    shim = f"import base64, binascii, codecs, zlib\nexec(zlib.decompress({expression}))\n"
    result = unwrap_source(shim, "train_gpt.py")
    assert [(d.text, d.origin) for d in result.decoded] == [
        (PROGRAM, f"decoded from train_gpt.py:2 via {steps} → zlib.decompress")
    ]


def test_plus_joined_str_and_bytes_pieces() -> None:
    payload = _b85_lzma(PROGRAM)
    half = len(payload) // 2
    shim = f'import lzma, base64\nexec(lzma.decompress(base64.b85decode(b"{payload[:half]}" + b"{payload[half:]}")))\n'
    assert [d.text for d in unwrap_source(shim, "train_gpt.py").decoded] == [PROGRAM]
    shim = f'import lzma, base64\nexec(lzma.decompress(base64.b85decode("{payload[:half]}" "{payload[half:]}")))\n'
    assert [d.text for d in unwrap_source(shim, "train_gpt.py").decoded] == [PROGRAM]


@pytest.mark.parametrize(
    "sink",
    [
        "exec(compile(src, 'train_gpt.py', 'exec'))",
        "import linecache\nlinecache.cache['<golf>'] = (len(src), None, src.splitlines(True), '<golf>')",
        "import importlib.util, tempfile\np = tempfile.mktemp(suffix='.py')\nopen(p, 'w').write(src)\n"
        "spec = importlib.util.spec_from_file_location('m', p)",
        "pass",
    ],
    ids=["compile", "linecache", "tempfile-importlib", "unused"],
)
def test_any_sink_is_decoded(sink: str) -> None:
    shim = f'import lzma, base64\nsrc = lzma.decompress(base64.b85decode("{_b85_lzma(PROGRAM)}")).decode()\n{sink}\n'
    result = unwrap_source(shim, "train_gpt.py")
    assert [(d.text, d.line) for d in result.decoded] == [(PROGRAM, 2)]
    assert result.problems == []


def test_312_fstrings_in_decoded_code_are_kept_and_scanned() -> None:
    inner = PROGRAM_312 + wrap_gzip_b64(PROGRAM)
    result = unwrap_source(wrap_lzma_b85(inner), "train_gpt.py")
    assert [(d.text, d.origin) for d in result.decoded] == [
        (inner, "decoded from train_gpt.py:2 via b85decode → lzma.decompress"),
        (PROGRAM, "decoded from train_gpt.py[decoded#1]:3 via b64decode → gzip.decompress"),
    ]


def test_data_that_is_not_python_is_ignored_unless_executed() -> None:
    blob = base64.b85encode(zlib.compress(bytes(range(256)) * 4)).decode()
    quiet = f'import zlib, base64\nTABLE = zlib.decompress(base64.b85decode("{blob}"))\n'
    assert unwrap_source(quiet, "train_gpt.py").decoded == []
    assert unwrap_source(quiet, "train_gpt.py").problems == []
    loud = f'import zlib, base64\nexec(zlib.decompress(base64.b85decode("{blob}")))\n'
    result = unwrap_source(loud, "train_gpt.py")
    assert result.decoded == []
    assert result.problems == [
        "could not decode train_gpt.py:2 (b85decode → zlib.decompress): the decoded data is not UTF-8 text"
    ]
    prose = base64.b64encode(zlib.compress(b"this is not python at all")).decode()
    result = unwrap_source(f'import zlib, base64\nexec(zlib.decompress(base64.b64decode("{prose}")))\n', "t.py")
    assert result.problems == ["could not decode t.py:2 (b64decode → zlib.decompress): the decoded data is not Python"]


def test_corrupt_payloads_are_problems() -> None:
    payload = _b85_lzma(PROGRAM)
    truncated = f'import lzma, base64\nexec(lzma.decompress(base64.b85decode("{payload[:-10]}")))\n'
    assert unwrap_source(truncated, "train_gpt.py").problems == [
        "could not decode train_gpt.py:2 (b85decode → lzma.decompress): "
        "lzma: compressed data ended before the end-of-stream marker"
    ]
    bad_encoding = 'import lzma, base64\nexec(lzma.decompress(base64.b64decode("not*base64!")))\n'
    (problem,) = unwrap_source(bad_encoding, "train_gpt.py").problems
    assert problem.startswith("could not decode train_gpt.py:2 (b64decode → lzma.decompress): ")
    for garbage, reason in (
        (b"not lzma data" * 4, "Input format not supported by decoder"),
        (bytes(64), "no data decoded"),
    ):
        encoded = base64.b85encode(garbage).decode()
        shim = f'import lzma, base64\nexec(lzma.decompress(base64.b85decode("{encoded}")))\n'
        assert unwrap_source(shim, "t.py").problems == [
            f"could not decode t.py:2 (b85decode → lzma.decompress): lzma: {reason}"
        ]


def test_bomb_stops_at_the_cap() -> None:
    payload = base64.b85encode(zlib.compress(bytes(4 << 20))).decode()
    shim = f'import zlib, base64\nexec(zlib.decompress(base64.b85decode("{payload}")))\n'
    result = unwrap_source(shim, "train_gpt.py", max_bytes=1 << 20)
    assert result.decoded == []
    assert result.problems == [
        "could not decode train_gpt.py:2 (b85decode → zlib.decompress): "
        f"zlib output exceeds the {1 << 20} byte cap (decompression bomb?)"
    ]


def test_huge_lzma_dictionary_is_refused_before_allocation() -> None:
    shim = (
        'import lzma, base64\nexec(lzma.decompress(base64.b85decode("abcd"), format=lzma.FORMAT_RAW, '
        'filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4000000000}]))\n'
    )
    (problem,) = unwrap_source(shim, "train_gpt.py").problems
    assert "dict_size 4000000000 is over the" in problem


def test_nesting_depth_is_capped() -> None:
    text = PROGRAM
    for _ in range(4):
        text = wrap_lzma_b85(text)
    result = unwrap_source(text, "train_gpt.py", max_depth=2)
    assert [d.depth for d in result.decoded] == [1, 2]
    assert result.problems == ["could not decode train_gpt.py[decoded#1]:2: shims nested deeper than 2 levels"]
    assert [d.depth for d in unwrap_source(text, "train_gpt.py").decoded] == [1, 2, 3, 4]


def test_decode_only_chain_counts_when_executed() -> None:
    encoded = base64.b64encode(PROGRAM.encode()).decode()
    executed = f'import base64\nexec(base64.b64decode("{encoded}"))\n'
    assert [d.origin for d in unwrap_source(executed, "train_gpt.py").decoded] == [
        "decoded from train_gpt.py:2 via b64decode"
    ]
    table = f'import base64\nKEY = base64.b64decode("{encoded}")\n'
    assert unwrap_source(table, "train_gpt.py").decoded == []


@pytest.mark.parametrize(
    ("code", "siblings"),
    [
        (SIBLING_SHIM, ["records/x/train_gpt_decode.py"]),
        ("exec(open('helper_code.py').read())\n", ["helper_code.py"]),
        ("from pathlib import Path\nexec(Path(__file__).with_name('h.py').read_text())\n", ["records/x/h.py"]),
        (
            "import os\nwith open(os.path.join(os.path.dirname(__file__), 'lib', 'k.py')) as f:\n    s = f.read()\nexec(s)\n",
            ["records/x/lib/k.py"],
        ),
        ("import runpy\nrunpy.run_path('tools/run.py')\n", ["tools/run.py"]),
        ("exec(open(input()).read())\n", []),
    ],
)
def test_sibling_files(code: str, siblings: list[str]) -> None:
    result = unwrap_source(code, "records/x/train_gpt.py")
    assert result.siblings == siblings
    assert result.problems == []


def test_sibling_outside_the_folder_is_external_code() -> None:
    result = unwrap_source("exec(open('../../other/train.py').read())\n", "train_gpt.py")
    assert result.siblings == []
    assert result.problems == []
    assert result.external == ["train_gpt.py:1 executes ../../other/train.py, outside the submission folder"]


def test_hostile_text_never_raises() -> None:
    deep = "x = " + "(" * 300 + "1" + ")" * 300 + "\n"
    long_chain = 'import zlib\nexec(zlib.decompress(b"" ' + " + ".join(['b"a"'] * 5000) + "))\n"
    for text in (deep, long_chain, "\x00\x01", "def f(:\n", "exec(zlib.decompress(" * 50):
        result = unwrap_source(text, "train_gpt.py")
        assert result.decoded == []


def test_unhexlify_label_and_bytes_literal_argument() -> None:
    payload = binascii.hexlify(lzma.compress(PROGRAM.encode())).decode()
    shim = f'import lzma\nfrom binascii import unhexlify as u\nexec(lzma.decompress(u(b"{payload}")))\n'
    assert [d.origin for d in unwrap_source(shim, "train_gpt.py").decoded] == [
        "decoded from train_gpt.py:3 via unhexlify → lzma.decompress"
    ]


def test_executed_chain_over_a_non_literal_is_a_problem() -> None:
    shim = "import lzma, sys\nexec(lzma.decompress(sys.stdin.buffer.read()))\n"
    assert unwrap_source(shim, "train_gpt.py").problems == [
        "could not decode train_gpt.py:2 (lzma.decompress): the executed payload is not a literal "
        "(call of an unknown function)"
    ]
    artifact = "import lzma\nstate = lzma.decompress(open('final_model.ptz', 'rb').read())\n"
    assert unwrap_source(artifact, "train_gpt.py").problems == []


@pytest.mark.parametrize("wbits", ["-15", "wbits=-15", "-zlib.MAX_WBITS"])
def test_raw_deflate_with_a_negative_window_decodes(wbits: str) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = base64.b64encode(compressor.compress(PROGRAM.encode()) + compressor.flush()).decode()
    shim = f'import zlib, base64\nexec(zlib.decompress(base64.b64decode("{payload}"), {wbits}))\n'
    result = unwrap_source(shim, "train_gpt.py")
    assert not result.problems
    assert [d.text for d in result.decoded] == [PROGRAM]
