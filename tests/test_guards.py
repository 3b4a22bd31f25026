"""Runtime guards: network, training-shard and process attempts are refused *and* recorded (with
the submission's file and line); the evaluation's own inputs stay readable; the hook is inert
outside a guarded block; and golf-eval reports the fixtures' attempts end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from harness.cli.eval import main
from harness.data.embedded import DataPaths
from harness.data.shards import read_shard, write_shard
from harness.errors import UsageError
from harness.evaluate.guards import GuardRefusal, guarded
from harness.evaluate.scored import RuntimeViolation
from harness.findings import Severity
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import model_from_artifact, save_artifact

ENTRIES = Path(__file__).parent / "fixtures" / "entries"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded; on a loaded machine OpenMP spinning costs seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _line_of(entry: str, needle: str) -> int:
    lines = (ENTRIES / entry / "golf_entry.py").read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if needle in text)


def _line_of_here(needle: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if needle in text)


def _load_entry(entry: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"h8_entry_{entry}", ENTRIES / entry / "golf_entry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An artifact, a validation shard and a training shard in a data folder."""
    root = tmp_path_factory.mktemp("guards")
    data = root / "data"
    data.mkdir()
    tokens = np.arange(2, 66, dtype=np.uint16)
    write_shard(data / "fineweb_val_000000.bin", tokens)
    write_shard(data / "fineweb_train_000000.bin", tokens[::-1].copy())
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, num_layers=1, model_dim=16, num_heads=2, num_kv_heads=1))
    artifact = root / "submission" / "final_model.int8.ptz"
    save_artifact(model.state_dict(), artifact)
    return {
        "root": root,
        "data": data,
        "artifact": artifact,
        "val": data / "fineweb_val_000000.bin",
        "train": data / "fineweb_train_000000.bin",
        "out": root / "out",
    }


def _allowed(ws: dict[str, Path]) -> list[Path]:
    return [ws["artifact"], ws["val"], ws["artifact"].parent, ws["out"]]


def test_training_shard_read_is_refused_with_the_submissions_line(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _load_entry("trainshard")
    monkeypatch.setenv("DATA_PATH", str(workspace["data"]))
    with guarded(_allowed(workspace)) as session:
        with pytest.raises(PermissionError) as refused:
            entry.load_model(str(workspace["artifact"]), torch.device("cpu"))
    assert isinstance(refused.value, GuardRefusal) and isinstance(refused.value, RuntimeViolation)
    assert refused.value.rule == "PG302"
    [finding] = session.findings
    assert (finding.rule, finding.severity, finding.file) == ("PG302", Severity.ERROR, "golf_entry.py")
    assert finding.line == _line_of("trainshard", "np.fromfile(")
    assert finding.message == (
        f"refused to read training data {workspace['train'].resolve()}: "
        "no training data may be accessed during evaluation"
    )


def test_swallowed_socket_attempt_is_still_a_finding_with_host_and_port(workspace: dict[str, Path]) -> None:
    entry = _load_entry("socket")
    with guarded(_allowed(workspace)) as session:
        model = entry.load_model(str(workspace["artifact"]), torch.device("cpu"))
        logits = model.forward_logits(torch.tensor([[2, 3, 4]]))  # the model catches the refusal
    assert tuple(logits.shape) == (1, 3, 64)
    [finding] = session.findings
    assert (finding.rule, finding.file) == ("PG301", "golf_entry.py")
    assert finding.line == _line_of("socket", "socket.create_connection(")
    assert "127.0.0.1:9" in finding.message and "socket.getaddrinfo" in finding.message
    assert [a.to_json()["target"] for a in session.attempts] == ["127.0.0.1:9"]


def test_process_spawn_is_refused(workspace: dict[str, Path]) -> None:
    entry = _load_entry("spawn")
    with guarded(_allowed(workspace)) as session:
        with pytest.raises(PermissionError):
            entry.load_model(str(workspace["artifact"]), torch.device("cpu"))
        with pytest.raises(PermissionError):
            os.system("true")
    rules = [(f.rule, f.file) for f in session.findings]
    assert rules == [("PG301", "golf_entry.py"), ("PG301", "test_guards.py")]
    assert session.findings[0].line == _line_of("spawn", "subprocess.run(")
    assert f"subprocess.Popen: {sys.executable} -c" in session.findings[0].message
    assert "os.system: true" in session.findings[1].message


def test_network_calls_of_every_kind_are_refused(workspace: dict[str, Path]) -> None:
    import http.client
    import urllib.request

    with guarded(_allowed(workspace)) as session:
        for attempt in (
            lambda: socket.getaddrinfo("example.com", 443),
            lambda: urllib.request.urlopen("http://example.com/model.bin"),
            lambda: http.client.HTTPConnection("example.org", 8080).connect(),
        ):
            with pytest.raises(PermissionError):
                attempt()
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(PermissionError):
            raw.connect(("10.1.2.3", 80))
        raw.close()
    targets = [(a.rule, a.event, a.target) for a in session.attempts]
    assert targets == [
        ("PG301", "socket.getaddrinfo", "example.com:443"),
        ("PG301", "urllib.Request", "http://example.com/model.bin"),
        ("PG301", "http.client.connect", "example.org:8080"),
        ("PG301", "socket.connect", "10.1.2.3:80"),
    ]


def test_artifact_shard_tokenizer_and_site_packages_imports_are_allowed(
    workspace: dict[str, Path], embedded: DataPaths
) -> None:
    import importlib

    from harness.data.byte_accounting import load_tokenizer

    sys.modules.pop("numpy.lib.recfunctions", None)
    with guarded([*_allowed(workspace), embedded.tokenizer_path]) as session:
        model = model_from_artifact(workspace["artifact"])
        tokens = read_shard(workspace["val"])
        sp = load_tokenizer(embedded.tokenizer_path)
        recfunctions = importlib.import_module("numpy.lib.recfunctions")  # reads site-packages files
    assert session.findings == [] and session.attempts == []
    assert tokens.shape == (64,) and sp.get_piece_size() == 1024 and model.config.vocab_size == 64
    assert callable(recfunctions.merge_arrays)


def test_allowed_reads_writes_and_stdlib_imports_raise_nothing(workspace: dict[str, Path]) -> None:
    workspace["out"].mkdir(exist_ok=True)
    sys.modules.pop("colorsys", None)
    with guarded(_allowed(workspace)) as session:
        (workspace["out"] / "cache.bin").write_bytes(b"ok")
        (workspace["out"] / "cache.bin").read_bytes()
        assert workspace["artifact"].read_bytes()[:1]
        import colorsys  # noqa: F401 — a fresh import reads stdlib files under the guard

        with open(os.devnull, "w") as sink:
            sink.write("x")
    assert session.findings == [] and session.attempts == []


def test_outside_paths_and_writes_to_inputs_are_refused(workspace: dict[str, Path]) -> None:
    # A file outside every allowed root: not the repository (a CI clone may live under the
    # temp dir, which the guard allows) but a system file every Linux machine has.
    outside = Path("/etc/passwd")
    with guarded(_allowed(workspace)) as session:
        with pytest.raises(PermissionError):
            outside.read_text()
        with pytest.raises(PermissionError):
            workspace["val"].write_bytes(b"tampered")
        with pytest.raises(PermissionError):
            os.remove(workspace["artifact"])
    assert [(f.rule, f.line > 0) for f in session.findings] == [("PG302", True)] * 3
    assert session.findings[0].message == (
        f"refused to read {outside}: outside the artifact, validation, tokenizer, submission and output paths"
    )
    assert session.findings[1].message.startswith(f"refused to write {workspace['val'].resolve()}:")
    assert workspace["val"].stat().st_size == 1024 + 64 * 2 and workspace["artifact"].exists()


def test_symlink_to_training_shard_inside_allowed_folder_is_refused(workspace: dict[str, Path]) -> None:
    workspace["out"].mkdir(exist_ok=True)
    link = workspace["out"] / "innocent.bin"
    link.unlink(missing_ok=True)
    link.symlink_to(workspace["train"])
    with guarded(_allowed(workspace)) as session:
        with pytest.raises(PermissionError):
            link.read_bytes()
    assert session.findings[0].rule == "PG302"
    assert str(workspace["train"].resolve()) in session.findings[0].message


def test_repeated_attempts_are_counted_once_and_guard_is_inert_afterwards(workspace: dict[str, Path]) -> None:
    with guarded(_allowed(workspace), forbidden_paths=[workspace["train"]]) as session:
        for _ in range(3):
            try:
                workspace["train"].read_bytes()
            except PermissionError:
                pass
    assert len(session.findings) == 1 and session.attempts[0].count == 3
    assert len(workspace["train"].read_bytes()) == 1024 + 64 * 2  # no guard active: reads work again


def test_guards_do_not_nest(workspace: dict[str, Path]) -> None:
    with guarded(_allowed(workspace)):
        with pytest.raises(UsageError, match="already active"):
            with guarded(_allowed(workspace)):
                pass
    with guarded(_allowed(workspace)) as session:  # the failed nesting left nothing behind
        pass
    assert session.findings == []


# ---------------------------------------------------------------- golf-eval end to end

E2E_VAL_TOKENS = 257


@pytest.fixture(scope="module")
def e2e(embedded: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("guards_e2e")
    data = root / "data"
    data.mkdir()
    val = read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:E2E_VAL_TOKENS]
    write_shard(data / "fineweb_val_000000.bin", val)
    write_shard(data / "fineweb_train_000000.bin", val[:64])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=embedded.vocab_size, num_layers=1, model_dim=16, num_heads=2, num_kv_heads=1))
    for name in ("socket", "trainshard"):
        shutil.copytree(ENTRIES / name, root / name)
        save_artifact(model.state_dict(), root / name / "final_model.int8.ptz")
    return {"root": root, "data": data, "tokenizer": embedded.tokenizer_path}


def _golf_eval(e2e: dict[str, Path], name: str) -> tuple[int, dict]:
    out = e2e["root"] / f"out_{name}"
    code = main(
        [
            str(e2e["root"] / name),
            "--data",
            str(e2e["data"]),
            "--tokenizer",
            str(e2e["tokenizer"]),
            "--seq-len",
            "32",
            "--chunk-tokens",
            "128",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    return code, json.loads((out / "report.json").read_text())


def _runtime(report: dict, rule: str) -> list[dict]:
    return [
        f
        for f in report["findings"]
        if f["rule"] == rule and f["file"] == "golf_entry.py" and f["message"].startswith("refused")
    ]


def test_golf_eval_reports_the_training_shard_read(e2e: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_PATH", str(e2e["data"]))
    code, report = _golf_eval(e2e, "trainshard")
    assert code == 1 and report["audited"] is False
    [finding] = [f for f in report["findings"] if f["rule"] == "PG302"]  # once: not again at <runtime>:0
    assert (finding["file"], finding["line"]) == ("golf_entry.py", _line_of("trainshard", "np.fromfile("))
    assert str((e2e["data"] / "fineweb_train_000000.bin").resolve()) in finding["message"]
    assert report["guards"] == {
        "available": True,
        "attempts": [
            {
                "rule": "PG302",
                "event": "open",
                "target": str((e2e["data"] / "fineweb_train_000000.bin").resolve()),
                "file": "golf_entry.py",
                "line": _line_of("trainshard", "np.fromfile("),
                "count": 1,
            }
        ],
    }
    markdown = (e2e["root"] / "out_trainshard" / "report.md").read_text()
    assert (
        f"| PG302 | open | `{(e2e['data'] / 'fineweb_train_000000.bin').resolve()}` | "
        f"`golf_entry.py:{_line_of('trainshard', 'np.fromfile(')}` | 1 |"
    ) in markdown.splitlines()


def test_golf_eval_reports_the_socket_even_though_the_model_swallowed_it(e2e: dict[str, Path]) -> None:
    code, report = _golf_eval(e2e, "socket")
    assert code == 1 and report["audited"] is False and report["complete"] is True
    [finding] = _runtime(report, "PG301")
    line = _line_of("socket", "socket.create_connection(")
    assert finding["line"] == line
    assert "127.0.0.1:9" in finding["message"]
    # golf-check's static PG301 at the same line, then the guard's: no <runtime>:0 / <model>:0 copy.
    assert [
        (f["file"], f["line"], f["message"].startswith("refused")) for f in report["findings"] if f["rule"] == "PG301"
    ] == [("golf_entry.py", line, False), ("golf_entry.py", line, True)]
    assert report["guards"] == {
        "available": True,
        "attempts": [
            {
                "rule": "PG301",
                "event": "socket.getaddrinfo",
                "target": "127.0.0.1:9",
                "file": "golf_entry.py",
                "line": line,
                "count": 1,
            }
        ],
    }


def test_socket_entry_yields_exactly_one_runtime_pg301(e2e: dict[str, Path]) -> None:
    """The pipeline without the static audit: the guard's finding is the only PG301."""
    from harness.evaluate.evaluator import EvalConfig
    from harness.evaluate.pipeline import EvalRequest, run_evaluation

    data = DataPaths(data_dir=e2e["data"], tokenizer_path=e2e["tokenizer"], vocab_size=1024)
    request = EvalRequest(
        submission=e2e["root"] / "socket",
        artifact=e2e["root"] / "socket" / "final_model.int8.ptz",
        data=data,
        config=EvalConfig(seq_len=32, chunk_tokens=128),
        out_dir=e2e["root"] / "out_socket_pipeline",
    )
    outcome = run_evaluation(request)
    assert [(f.rule, f.file, f.line) for f in outcome.findings] == [
        ("PG301", "golf_entry.py", _line_of("socket", "socket.create_connection("))
    ]
    assert outcome.audited is False and outcome.report["complete"] is True


class _ConnectingModel(torch.nn.Module):
    """Does not swallow the refusal: the guard's exception stops scoring (the evaluator's handler)."""

    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        socket.create_connection(("127.0.0.1", 9), timeout=0.1).close()
        return self.base.forward_logits(input_ids)


def test_refusal_that_stops_scoring_is_filed_once_by_the_guard(workspace: dict[str, Path]) -> None:
    from harness.evaluate.adapters.none import NoAdapter
    from harness.evaluate.evaluator import EvalConfig, EvalInputs, evaluate

    model = _ConnectingModel(model_from_artifact(workspace["artifact"]))
    tokens = np.arange(2, 66, dtype=np.int64) % 64
    inputs = EvalInputs(tokens=tokens, target_bytes=np.ones(63, dtype=np.int64), vocab_size=64)
    with guarded(_allowed(workspace)) as session:
        result = evaluate(model, NoAdapter(), inputs, EvalConfig(seq_len=16, chunk_tokens=32), None)
    assert result.findings == [] and result.chunks_done == 0
    assert result.stopped is not None and result.stopped.startswith("stopped while scoring chunk 0: refused network")
    assert [(f.rule, f.file, f.line) for f in session.findings] == [
        ("PG301", "test_guards.py", _line_of_here('socket.create_connection(("127.0.0.1", 9)'))
    ]


class _TrainingDataAdapter:
    """Reads a training shard while adapting: the guard refuses, records it and stops the run."""

    name = "greedy"

    def __init__(self, shard: Path) -> None:
        self.shard = shard

    def adapt(self, model: torch.nn.Module, scored: object, chunk: object) -> None:
        self.shard.read_bytes()


def test_refusal_during_adaptation_is_filed_once_by_the_guard(workspace: dict[str, Path]) -> None:
    from harness.evaluate.evaluator import EvalConfig, EvalInputs, evaluate

    model = model_from_artifact(workspace["artifact"])
    tokens = np.arange(2, 66, dtype=np.int64) % 64
    inputs = EvalInputs(tokens=tokens, target_bytes=np.ones(63, dtype=np.int64), vocab_size=64)
    with guarded(_allowed(workspace), forbidden_paths=[workspace["train"]]) as session:
        result = evaluate(
            model,
            _TrainingDataAdapter(workspace["train"]),
            inputs,
            EvalConfig(seq_len=16, chunk_tokens=32, ttt="greedy"),
            None,
        )
    assert result.findings == [] and result.chunks_done == 1
    assert result.stopped == (
        f"stopped after chunk 0: refused to read training data {workspace['train'].resolve()}: "
        "no training data may be accessed during evaluation"
    )
    assert [(f.rule, f.file, f.line) for f in session.findings] == [
        ("PG302", "test_guards.py", _line_of_here("self.shard.read_bytes()"))
    ]
