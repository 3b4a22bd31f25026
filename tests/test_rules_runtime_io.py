"""PG301–PG302: network access at run time and training data read after the training clock."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import harness.check.rules_runtime_io as rules_runtime_io
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import Setting, SourceFile, Submission

MECH = Path(__file__).parent / "fixtures" / "mech"


def _runtime_io(files: dict[str, str], settings: dict[str, Setting] | None = None) -> list[Finding]:
    sources = [
        SourceFile(display_name=name, path=MECH / name, text=text, is_entry=name.startswith("train_gpt.py"))
        for name, text in files.items()
    ]
    submission = Submission(root=MECH, name="case", sources=sources, settings=settings or {})
    return rules_runtime_io.check(CheckContext(submission=submission, parsed=[parse_source(s) for s in sources]))


def _fixture(relative: str) -> dict[str, str]:
    return {"train_gpt.py": (MECH / relative).read_text(encoding="utf-8")}


def _summary(findings: list[Finding]) -> list[tuple[str, str, str, int]]:
    return [(f.rule, f.severity.value, f.file, f.line) for f in findings]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "illegal/PG301_hub_download.py",
            [("PG301", "error", "train_gpt.py", 18), ("PG301", "error", "train_gpt.py", 24)],
        ),
        ("illegal/PG302_gptq_after_clock.py", [("PG302", "error", "train_gpt.py", 44)]),
        ("illegal/PG302_gptq_loader_minified.py", [("PG302", "error", "train_gpt.py", 17)]),
        ("illegal/PG302_train_path_minified.py", [("PG302", "error", "train_gpt.py", 17)]),
        ("illegal/PG302_ngram_prefill_eval.py", [("PG302", "error", "train_gpt.py", 23)]),
    ],
)
def test_illegal_fixture_raises_exactly_its_rule(fixture: str, expected: list[tuple[str, str, str, int]]) -> None:
    assert _summary(_runtime_io(_fixture(fixture))) == expected


@pytest.mark.parametrize("fixture", sorted(p.name for p in (MECH / "legal").glob("*.py")))
def test_legal_fixture_raises_nothing(fixture: str) -> None:
    assert _runtime_io(_fixture(f"legal/{fixture}")) == []


def test_download_in_a_data_prep_script_is_info_only() -> None:
    folder = MECH / "legal" / "prep_download"
    files = {
        "train_gpt.py": (folder / "train_gpt.py").read_text(encoding="utf-8"),
        "cached_challenge_fineweb.py": (folder / "cached_challenge_fineweb.py").read_text(encoding="utf-8"),
    }
    findings = _runtime_io(files)
    assert _summary(findings) == [("PG301", "info", "cached_challenge_fineweb.py", 9)]
    assert "does not import" in findings[0].message


@pytest.mark.parametrize(
    "entry",
    [
        'import subprocess\nsubprocess.run(["python", "cached_challenge_fineweb.py", "--train-shards", "1"])\n',
        'import runpy\nrunpy.run_path("cached_challenge_fineweb.py")\n',
    ],
)
def test_prep_script_run_by_the_entry_script_is_an_error(entry: str) -> None:
    prep = (MECH / "legal" / "prep_download" / "cached_challenge_fineweb.py").read_text(encoding="utf-8")
    findings = _runtime_io({"train_gpt.py": entry, "cached_challenge_fineweb.py": prep})
    assert _summary(findings) == [("PG301", "error", "cached_challenge_fineweb.py", 9)]


def test_download_in_a_helper_the_entry_imports_is_an_error() -> None:
    helper = "import urllib.request as ur\n\ndef fetch(url):\n    return ur.urlopen(url).read()\n"
    entry = "from data_helper import fetch\n\nprint(len(fetch('https://example.org/tok.model')))\n"
    findings = _runtime_io({"train_gpt.py": entry, "data_helper.py": helper})
    assert _summary(findings) == [("PG301", "error", "data_helper.py", 4)]
    assert "urllib.request.urlopen" in findings[0].message


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("import os\nos.system('curl -sL https://x.org/m.bin -o m.bin')\n", 2),
        ("import requests as rq\nr = rq.get('https://x.org')\n", 2),
        ("import torch\nm = torch.hub.load('org/repo', 'model')\n", 2),
        ("from datasets import load_dataset\nds = load_dataset('HuggingFaceFW/fineweb')\n", 2),
        ("import socket\ns = socket.create_connection(('x.org', 443))\n", 2),
    ],
)
def test_network_call_forms(code: str, line: int) -> None:
    assert _summary(_runtime_io({"train_gpt.py": code})) == [("PG301", "error", "train_gpt.py", line)]


def test_harmless_socket_and_subprocess_uses_pass() -> None:
    code = textwrap.dedent(
        """
        import socket
        import subprocess

        print(socket.gethostname())
        print(subprocess.run(["nvidia-smi"], capture_output=True).stdout)
        """
    )
    assert _runtime_io({"train_gpt.py": code}) == []


def test_reserve_set_to_zero_by_the_run_script_makes_calibration_illegal() -> None:
    settings = {"GPTQ_RESERVE_SECONDS": Setting("GPTQ_RESERVE_SECONDS", "0", "run.sh", 3, "script")}
    (finding,) = _runtime_io(_fixture("legal/gptq_reserve.py"), settings)
    assert (finding.rule, finding.severity, finding.line) == ("PG302", Severity.ERROR, 45)
    assert "no reserved slice" in finding.message
    assert [step.line for step in finding.path] == [36, 45, 27]


def test_training_data_after_serialization_is_illegal_even_with_a_reserve() -> None:
    code = (MECH / "legal" / "gptq_reserve.py").read_text(encoding="utf-8")
    code += textwrap.dedent(
        """

        def main(h, model, optimizer):
            train_and_quantize(h, model, optimizer)
            warm = DistributedTokenLoader(h.train_files, 0, 1)
            print(warm)
        """
    )
    findings = _runtime_io({"train_gpt.py": code})
    assert _summary(findings) == [("PG302", "error", "train_gpt.py", 53)]
    assert "after the final model is serialized" in findings[0].message


def test_switched_off_calibration_is_info() -> None:
    code = (MECH / "illegal" / "PG302_gptq_after_clock.py").read_text(encoding="utf-8")
    code = code.replace(
        "    hessians = collect_hessians(model, loader, h.calib_batches)\n",
        "    hessians = None\n"
        "    if int(os.environ.get('GPTQ_ENABLED', '0')):\n"
        "        hessians = collect_hessians(model, loader, h.calib_batches)\n",
    )
    (off,) = _runtime_io({"train_gpt.py": code})
    assert (off.rule, off.severity, off.line) == ("PG302", Severity.INFO, 46)
    settings = {"GPTQ_ENABLED": Setting("GPTQ_ENABLED", "1", "README.md", 9, "readme")}
    (on,) = _runtime_io({"train_gpt.py": code}, settings)
    assert (on.severity, "enabled by GPTQ_ENABLED=1 in README.md:9" in on.message) == (Severity.ERROR, True)


def test_memory_reserved_logging_is_not_a_calibration_reserve() -> None:
    code = (MECH / "illegal" / "PG302_gptq_after_clock.py").read_text(encoding="utf-8")
    code = code.replace(
        '            print(f"stopping_early: wallclock_cap step:{step}")\n',
        '            print(f"stopping_early: wallclock_cap step:{step} mem:{torch.cuda.memory_reserved()}")\n',
    )
    assert _summary(_runtime_io({"train_gpt.py": code})) == [("PG302", "error", "train_gpt.py", 44)]


def test_training_data_after_the_final_save_without_a_clocked_loop() -> None:
    code = textwrap.dedent(
        """
        import torch

        def build_ngram_table(loader, n):
            table = {}
            for _ in range(n):
                x, y = loader.next_batch(65536, 1024)
                table[int(x[0, -1])] = int(y[0, -1])
            return table

        def main(model, opt, train_loader, steps):
            for step in range(steps):
                x, y = train_loader.next_batch(524288, 1024)
                model(x, y).backward()
                opt.step()
                torch.save(model.state_dict(), f"ckpt_{step}.pt")
            torch.save(model.state_dict(), "final_model.pt")
            table = build_ngram_table(train_loader, 16)
            return table
        """
    )
    (finding,) = _runtime_io({"train_gpt.py": code})
    assert (finding.rule, finding.severity, finding.line) == ("PG302", Severity.ERROR, 18)
    assert "after the final model is serialized (line 17)" in finding.message
    assert [step.line for step in finding.path] == [17, 18, 7]


def test_minified_reserve_is_read_through_its_env_name_and_zero_makes_it_illegal() -> None:
    assert _runtime_io(_fixture("legal/gptq_reserve_minified.py")) == []
    settings = {"GPTQ_RESERVE_SECONDS": Setting("GPTQ_RESERVE_SECONDS", "0", "run.sh", 3, "script")}
    (finding,) = _runtime_io(_fixture("legal/gptq_reserve_minified.py"), settings)
    assert (finding.rule, finding.severity, finding.line) == ("PG302", Severity.ERROR, 17)
    assert "`hs(m,tl,a.cb)`" in finding.message


def test_closing_the_training_loader_after_the_clock_is_not_a_read() -> None:
    code = (MECH / "illegal" / "PG302_gptq_loader_minified.py").read_text(encoding="utf-8")
    code = code.replace("q=m.gptq(hs(m,tl,a.cb));", "tl.close();q=m.gptq({});")
    code = code.replace("class TL:", "class TL:\n\tdef close(s):s.t=None")
    assert _runtime_io({"train_gpt.py": code}) == []
