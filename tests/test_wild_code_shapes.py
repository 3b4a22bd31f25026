"""Shapes from the wild set that hid code or leaked names (issue 12), as minimal programs.

- #1570: a shim writes its decoded payload to ``_train.py`` beside itself and runs that file;
  the file is the decoded source, not a missing sibling.
- #1839: a bundle: a dict of relative paths to their source text, written out at run time,
  then one of them run; each bundled ``.py`` is analyzed as a source of the submission.
- #1839 again: comprehension variables live in the comprehension's own scope, so ``x`` in a
  logged ``str(x) for x in val_stats`` is not the ``x`` of a later ``float(x) for x in cfg``.
"""

from __future__ import annotations

import base64
import lzma
from pathlib import Path

from harness.check.engine import analyze
from harness.findings import Severity, verdict_for
from harness.loader import load_submission
from tests.shims import wrap_lzma_b85

LEGAL_SCOPES = 'import glob\nimport io\nimport os\n\nimport numpy as np\nimport torch\n\n\ndef load_validation_tokens(pattern):\n    files = sorted(glob.glob(pattern))\n    return torch.cat([torch.from_numpy(np.fromfile(f, dtype="<u2", offset=1024).astype(np.int64)) for f in files])\n\n\ndef quantize(state_dict, percentiles):\n    out = {}\n    for name, w in state_dict.items():\n        clip = torch.quantile(w.abs().float(), percentiles[0])\n        out[name] = torch.round(w / clip).to(torch.int8)\n    return out\n\n\ndef main():\n    val_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_val_*.bin")\n    config = {"percentiles": [0.999, 0.9999]}\n    model = torch.load("trained_fp32.pt", weights_only=False)\n    val_tokens = load_validation_tokens(val_files)\n    if int(os.environ.get("LOG_PARTITION", "1")):\n        counts = [int(val_tokens[i::8].numel()) for i in range(8)]\n        print("docs_per_rank:" + ",".join(str(x) for x in counts))\n    if int(os.environ.get("QUANTIZE", "1")):\n        quant = quantize(model.state_dict(), percentiles=tuple(float(x) for x in config["percentiles"]))\n        buf = io.BytesIO()\n        torch.save(quant, buf)\n        with open("final_model.int8.ptz", "wb") as handle:\n            handle.write(buf.getvalue())\n\n\nif __name__ == "__main__":\n    main()\n'

# the twin quantizes with statistics of the validation tokens themselves
ILLEGAL_SCOPES = LEGAL_SCOPES.replace('for x in config["percentiles"]', "for x in counts")
ILLEGAL_LINE = next(
    i for i, line in enumerate(ILLEGAL_SCOPES.splitlines(), 1) if "percentiles=tuple(float(x) for x in counts)" in line
)


def _errors(folder: Path) -> set[tuple[str, str, int]]:
    return {(f.rule, f.file, f.line) for f in analyze(load_submission(folder)) if f.severity is Severity.ERROR}


def test_a_comprehension_variable_does_not_leak_into_a_later_comprehension(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text(LEGAL_SCOPES)
    assert _errors(tmp_path / "train_gpt.py") == set()


def test_twin_quantizing_with_validation_statistics_is_still_caught(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text(ILLEGAL_SCOPES)
    assert ("PG105", "train_gpt.py", ILLEGAL_LINE) in _errors(tmp_path / "train_gpt.py")


def test_a_shim_running_the_file_it_writes_its_payload_to_is_read_in_full(tmp_path: Path) -> None:
    payload = base64.b85encode(lzma.compress(ILLEGAL_SCOPES.encode())).decode("ascii")
    (tmp_path / "train_gpt.py").write_text(
        "import lzma as L, base64 as B, os, runpy\n"
        f"_c = L.decompress(B.b85decode({payload!r}))\n"
        "_d = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_train.py')\n"
        "with open(_d, 'wb') as _f:\n"
        "    _f.write(_c)\n"
        "runpy.run_path(_d, run_name='__main__')\n"
    )
    findings = analyze(load_submission(tmp_path))
    assert not [f for f in findings if f.rule == "PG000" and f.severity is Severity.ERROR]
    assert ("PG105", "train_gpt.py[decoded#1]", ILLEGAL_LINE) in {(f.rule, f.file, f.line) for f in findings}


def test_a_shim_running_a_written_file_whose_payload_does_not_decode_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text(
        "import lzma as L, base64 as B, os, runpy\n"
        "_c = L.decompress(B.b85decode('not a payload'))\n"
        "with open('_train.py', 'wb') as _f:\n"
        "    _f.write(_c)\n"
        "runpy.run_path('_train.py', run_name='__main__')\n"
    )
    findings = analyze(load_submission(tmp_path))
    assert verdict_for(findings) == "error"


def test_a_bundle_written_out_at_run_time_is_analyzed(tmp_path: Path) -> None:
    bundle = (
        "import runpy, sys\n"
        "from pathlib import Path\n"
        "ROOT = Path(__file__).resolve().parent\n"
        "FILES = {\n"
        "    'tools/__init__.py': '',\n"
        f"    '_pipeline.py': {ILLEGAL_SCOPES!r},\n"
        "    'plan.json': '{}',\n"
        "}\n"
        "for relative_path, text in FILES.items():\n"
        "    path = ROOT / relative_path\n"
        "    path.parent.mkdir(parents=True, exist_ok=True)\n"
        "    path.write_text(text, encoding='utf-8')\n"
        "runpy.run_path(str(ROOT / '_pipeline.py'), run_name='__main__')\n"
    )
    (tmp_path / "train_gpt.py").write_text(wrap_lzma_b85(bundle))
    findings = analyze(load_submission(tmp_path))
    assert not [f for f in findings if f.rule == "PG000" and f.severity is Severity.ERROR]
    bundled = {
        (f.rule, f.line)
        for f in findings
        if f.file.startswith("train_gpt.py[decoded#") and f.file != "train_gpt.py[decoded#1]"
    }
    assert ("PG105", ILLEGAL_LINE) in bundled
    assert verdict_for(findings) == "fail"
