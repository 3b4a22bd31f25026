"""Every code fixture, checked plain and inside every shim shape real submissions use.

Fixtures live in ``tests/fixtures/code/`` and ``tests/fixtures/mech/`` (``legal/*.py`` must
raise no warning or error; ``illegal/PGxxx_*.py`` must raise PGxxx at its declared severity, the
ID being the file-name prefix). Each is checked as a single ``train_gpt.py`` written plain, as
an lzma/base85 shim, a raw-LZMA2 shim, a split-literal zlib/base64 shim and a sibling-file shim;
in a shim the finding must sit in the decoded source, whose display name says so. A fixture
*folder* (``illegal/PGxxx_name/`` with ``train_gpt.py`` and helpers, a README…) is checked as a
submission folder with its ``train_gpt.py`` wrapped; there the finding may sit in a helper, and
package-level rules (missing submission.json…) are not what the fixture is about.
Env-switched fixtures (in a ``switched/`` folder, or ``PGxxx_*switched*.py`` under ``illegal/``)
hold illegal code behind a setting whose code default is off; checked without a run
configuration they must raise their rule at ``info`` and nothing louder for it, shimmed or not.
New fixture files and folders are picked up automatically.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from shims import wrap_lzma_b85, wrap_raw_lzma2, wrap_split_literal, write_sibling_shim

from harness.catalog import load_catalog
from harness.check.context import CheckOptions
from harness.check.runner import audit_submissions
from harness.findings import Finding, Severity

FIXTURE_ROOT = Path(__file__).parent / "fixtures"
FIXTURE_SETS = ("code", "mech")
_ILLEGAL_NAME = re.compile(r"(PG\d{3})_.+\.py")


_ILLEGAL_FOLDER = re.compile(r"(PG\d{3})_.+")
PACKAGE_RULES = {"PG303", "PG304"} | {f"PG40{n}" for n in range(1, 10)}


def _fixture_files() -> list[Path]:
    files: list[Path] = []
    for name in FIXTURE_SETS:
        for kind in ("legal", "illegal", "switched"):
            folder = FIXTURE_ROOT / name / kind
            files.extend(sorted(folder.glob("*.py")))
            files.extend(sorted(p for p in folder.glob("*") if p.is_dir() and (p / "train_gpt.py").is_file()))
    return files


def _rule_of(fixture: Path) -> str | None:
    pattern = _ILLEGAL_FOLDER if fixture.is_dir() else _ILLEGAL_NAME
    match = pattern.fullmatch(fixture.name)
    return match.group(1) if match else None


def _write_plain(folder: Path, text: str) -> Path:
    (folder / "train_gpt.py").write_text(text, encoding="utf-8")
    return folder / "train_gpt.py"


def _wrapped_by(wrap: Callable[[str], str]) -> Callable[[Path, str], Path]:
    def write(folder: Path, text: str) -> Path:
        return _write_plain(folder, wrap(text))

    return write


def _write_sibling(folder: Path, text: str) -> Path:
    write_sibling_shim(folder, text)
    return folder / "train_gpt.py"


WRAPPERS: dict[str, Callable[[Path, str], Path]] = {
    "plain": _write_plain,
    "lzma_b85": _wrapped_by(wrap_lzma_b85),
    "raw_lzma2": _wrapped_by(wrap_raw_lzma2),
    "split_literal": _wrapped_by(wrap_split_literal),
    "sibling": _write_sibling,
}
CASES = [(file, wrapper) for file in _fixture_files() for wrapper in WRAPPERS]


def test_fixture_sets_exist_and_are_named_by_rule() -> None:
    files = _fixture_files()
    assert any(file.parent.name == "legal" for file in files)
    assert any(file.parent.name == "illegal" for file in files)
    known = {rule.id for rule in load_catalog().rules}
    for file in files:
        if file.parent.name in ("illegal", "switched"):
            rule_id = _rule_of(file)
            assert rule_id, f"{file} must be named PGxxx_<what>.py (or a PGxxx_<what> folder)"
            assert rule_id in known, f"{file}: {rule_id} has no catalog entry"


def undeclared_severities(findings: list[Finding]) -> list[tuple[str, str, str]]:
    """Findings whose severity is neither their rule's nor one its page lowers it to."""
    catalog = load_catalog()
    bad = []
    for item in findings:
        rule = catalog.get(item.rule)
        if rule is None or item.severity not in rule.severities:
            bad.append((item.rule, item.severity.value, item.message))
    return bad


def _is_switched(fixture: Path) -> bool:
    return fixture.parent.name == "switched" or "switched" in fixture.stem


def _check(folder: Path, fixture: Path, wrapper: str) -> list[Finding]:
    if fixture.is_dir():
        shutil.copytree(fixture, folder, symlinks=True)
        entry = folder / "train_gpt.py"
        text = entry.read_text(encoding="utf-8")
        entry.unlink()
        WRAPPERS[wrapper](folder, text)
        target = folder
    else:
        folder.mkdir(parents=True, exist_ok=True)
        target = WRAPPERS[wrapper](folder, fixture.read_text(encoding="utf-8"))
    (result,) = audit_submissions([target], CheckOptions(), jobs=1, use_cache=False)
    if fixture.is_dir():
        return [f for f in result.findings if f.rule not in PACKAGE_RULES]
    return result.findings


@pytest.mark.parametrize(
    ("fixture", "wrapper"),
    CASES,
    ids=[f"{file.parent.parent.name}/{file.parent.name}/{file.name}-{wrapper}" for file, wrapper in CASES],
)
def test_fixture(fixture: Path, wrapper: str, tmp_path: Path) -> None:
    findings = _check(tmp_path / "submission", fixture, wrapper)
    summary = [(f.rule, f.severity.value, f.file, f.line) for f in findings]
    assert undeclared_severities(findings) == [], "a finding carries a severity its rule page does not declare"
    if fixture.parent.name == "legal":
        loud = [f for f in findings if f.severity in (Severity.ERROR, Severity.WARNING)]
        assert loud == [], f"legal fixture raised: {summary}"
        return
    rule_id = _rule_of(fixture)
    assert rule_id, f"{fixture.name} must be named PGxxx_<what>"
    if _is_switched(fixture):
        louder = [f for f in findings if f.rule == rule_id and f.severity is not Severity.INFO]
        assert louder == [], f"switched-off {rule_id} raised above info ({wrapper}): {summary}"
        severity: Severity | None = Severity.INFO
    else:
        declared = load_catalog().get(rule_id)
        severity = declared.severity if declared is not None else None
    raised = [f for f in findings if f.rule == rule_id and (severity is None or f.severity is severity)]
    assert raised, f"{rule_id} not raised ({wrapper}): {summary}"
    if fixture.is_dir():
        # The decisive code may be in a helper; what must never happen is a finding placed on
        # the shim's own text instead of the code it runs.
        if wrapper != "plain":
            assert all(f.file != "train_gpt.py" for f in raised), summary
    elif wrapper in ("lzma_b85", "raw_lzma2", "split_literal"):
        assert all("[decoded#" in f.file for f in raised), summary
    elif wrapper == "sibling":
        assert all(f.file.startswith("train_gpt_decode.py") for f in raised), summary
    else:
        assert all(f.file == "train_gpt.py" for f in raised), summary
