"""golf-check installed as a CI gate or a pre-commit hook installs it: the package alone, with its
core dependencies, in a fresh virtual environment, from the package registry.

Why a real install: the torch-free promise is about what ``pip install golf-harness`` brings and
what golf-check then imports, which no in-process test can see — the development venv has every
extra. The wheel is built from a copy of the files the package ships (not in place, so no
``build/`` or ``*.egg-info`` lands in the work tree) and installed non-editable, as a user gets it,
with its dependencies resolved from the registry. To keep the test short, the wheel is built by
this environment's setuptools and this pip installs into the new venv (``--python``), which is
created without pip: ensurepip and an isolated build environment would double its time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shims import wrap_lzma_b85

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("pyproject.toml", "README.md", "harness", "reference_model", "rules")
FIXTURE = ROOT / "tests" / "fixtures" / "code" / "illegal" / "PG101_minified.py"
EVAL_ONLY = ("torch", "numpy", "sentencepiece", "zstandard")
EXIT_MISSING_EXTRA = 4


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("core-install")
    source = base / "golf-harness"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SHIPPED:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy2(origin, source / name)
    venv = base / "venv"
    # The venv's own interpreter, never this one's site-packages (which hold every extra).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["GOLF_HARNESS_CACHE"] = str(base / "cache")
    created = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    assert created.returncode == 0, created.stderr
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _run(
        [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), "."], source, env
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (base / "dist").glob("golf_harness-*.whl")
    installed = _run([*pip, "--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel)], base, env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv, env


def test_core_install_has_no_eval_libraries(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = core_venv
    probe = f"import importlib.util as u; print(','.join(m for m in {EVAL_ONLY!r} if u.find_spec(m)))"
    found = _run([str(venv / "bin" / "python"), "-c", probe], tmp_path, env)
    assert (found.returncode, found.stdout.strip()) == (0, "")


def test_core_install_golf_check_fails_an_illegal_shim(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """A compressed self-extracting shim around an illegal script: unwrapping, parsing and the
    data-flow rules all run on the core dependencies, and the verdict is the same as here."""
    venv, env = core_venv
    script = tmp_path / "train_gpt.py"
    script.write_text(wrap_lzma_b85(FIXTURE.read_text()))
    done = _run([str(venv / "bin" / "golf-check"), "--format", "json", "--no-cache", str(script)], tmp_path, env)
    assert done.returncode == 1, done.stderr
    [submission] = json.loads(done.stdout)["submissions"]
    assert submission["verdict"] == "fail"
    errors = [(f["rule"], f["severity"]) for f in submission["findings"] if f["severity"] == "error"]
    assert errors == [("PG101", "error")]
    assert "torch" not in done.stderr and "Traceback" not in done.stderr


def test_core_install_runs_the_pre_commit_hook(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """The hook's environment is this install (``language: python``): its entry audits the
    folder of a staged file and fails the commit."""
    venv, env = core_venv
    folder = tmp_path / "records" / "track_10min_16mb" / "2026-04-01_Shim"
    folder.mkdir(parents=True)
    (folder / "train_gpt.py").write_text(wrap_lzma_b85(FIXTURE.read_text()))
    staged = "records/track_10min_16mb/2026-04-01_Shim/train_gpt.py"
    hook = [str(venv / "bin" / "python"), "-m", "harness.cli.precommit", "--format=json", "--no-cache", staged]
    done = _run(hook, tmp_path, env)
    assert done.returncode == 1, done.stderr
    [submission] = json.loads(done.stdout)["submissions"]
    assert submission["verdict"] == "fail" and "PG101" in {f["rule"] for f in submission["findings"]}


@pytest.mark.parametrize("command", [["golf-eval"], ["golf-eval", "verify", "chunks.jsonl"], ["golf-train"]])
def test_core_install_eval_commands_name_the_missing_extra(
    core_venv: tuple[Path, dict[str, str]], tmp_path: Path, command: list[str]
) -> None:
    venv, env = core_venv
    done = _run([str(venv / "bin" / command[0]), *command[1:]], tmp_path, env, timeout=120)
    assert done.returncode == EXIT_MISSING_EXTRA
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{command[0]}: error: {command[0]} needs the eval extra (torch is not installed): ")
    assert "golf-harness[eval]" in line
