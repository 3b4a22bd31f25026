"""Evaluator isolation: the scored-token view holds only the scored prefix; ``--isolate`` runs the
model and adapter in a child process that a hostile adapter cannot read ahead from; BPB is the
same bit for bit in both modes; a failing or orphaned child is handled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.cli.eval import main
from harness.data.embedded import DataPaths
from harness.data.shards import read_shard, write_shard
from harness.errors import EXIT_SUBMISSION_PROCESS
from harness.evaluate.adapters.base import AdapterConfig
from harness.evaluate.evaluator import EvalConfig
from harness.evaluate.isolation import IsolationError
from harness.evaluate.pipeline import EvalRequest, run_evaluation
from harness.evaluate.scored import ScoredTokens, UnscoredAccess, newly_scored
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import save_artifact

HERE = Path(__file__).parent
SEQ_LEN = 64
HOSTILE_TOKENS = 4097
SENTINEL_AT = 3000  # past the frontier of the only adaptation (after chunk 0: 2,049 tokens)


def test_view_holds_private_copies_of_the_scored_prefix_only() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    view = ScoredTokens()
    for end in (99, 250, 251, 600):  # targets [0, end) scored, chunk by chunk
        view._grow(newly_scored(tokens, view.frontier, end))
    assert view.frontier == 601 and sum(piece.size for piece in view._pieces) == 601
    assert all(piece.base is None and not np.shares_memory(piece, tokens) for piece in view._pieces)
    assert view.read(95, 260).tolist() == list(range(95, 260))  # across three pieces
    assert view[600].item() == 600 and view[:].shape == (601,)
    with pytest.raises(UnscoredAccess, match=r"asked for \[600, 602\) but only \[0, 601\) are scored"):
        view.read(600, 602)
    view._grow(newly_scored(tokens, view.frontier, 5000))  # the stream's end caps the frontier
    assert view.frontier == 1000


@pytest.fixture(scope="module")
def tiny_artifact(embedded: DataPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=embedded.vocab_size, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    path = tmp_path_factory.mktemp("isolation_artifact") / "final_model.int8.ptz"
    save_artifact(model.state_dict(), path)
    return path


def _evaluate(
    data: DataPaths, artifact: Path, out: Path, isolate: bool, submission: Path | None = None, **config: object
) -> dict:
    settings = {"seq_len": SEQ_LEN, "chunk_tokens": 4096, **config}
    request = EvalRequest(
        submission=submission,
        artifact=artifact,
        data=data,
        config=EvalConfig(**settings, isolate=isolate),  # type: ignore[arg-type]
        out_dir=out,
    )
    return run_evaluation(request).report


def _chunk_lines(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in ("wall_s", "prev")} for line in lines if line["kind"] == "chunk"]


def test_bpb_and_log_are_identical_in_process_and_isolated_on_the_embedded_data(
    embedded: DataPaths, tiny_artifact: Path, tmp_path: Path
) -> None:
    """Same windows, same batches, float32 logits either way: every chunk's NLL sum is bit-identical."""
    reports = {
        mode: _evaluate(embedded, tiny_artifact, tmp_path / mode, mode == "isolated") for mode in ("in", "isolated")
    }
    assert reports["in"]["tokens"] == 199_680 and reports["in"]["audited"] is True
    assert reports["isolated"]["audited"] is True and reports["isolated"]["findings"] == []
    assert reports["isolated"]["val_bpb"] == reports["in"]["val_bpb"]
    assert _chunk_lines(tmp_path / "isolated") == _chunk_lines(tmp_path / "in")  # sums (hex) and fingerprints
    assert (reports["in"]["isolation"]["mode"], reports["isolated"]["isolation"]["mode"]) == (
        "in-process",
        "child-process",
    )
    assert reports["isolated"]["config"]["isolate"] is True
    assert "- isolation: child process (`--isolate`)" in (tmp_path / "isolated" / "report.md").read_text()


def test_sgd_ttt_is_identical_in_process_and_isolated(embedded: DataPaths, tiny_artifact: Path, tmp_path: Path) -> None:
    """The adapter trains in the child on the tokens released to it: same steps, same weights, same BPB."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_shard(
        folder / "fineweb_val_000000.bin", read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:8193]
    )
    data = DataPaths(data_dir=folder, tokenizer_path=embedded.tokenizer_path, vocab_size=embedded.vocab_size)
    config: dict[str, Any] = {"ttt": "sgd", "chunk_tokens": 2048, "adapter": AdapterConfig(seq_len=SEQ_LEN, lr=0.05)}
    reports = {
        mode: _evaluate(data, tiny_artifact, tmp_path / mode, mode == "isolated", **config)
        for mode in ("in", "isolated")
    }
    assert reports["in"]["audited"] and reports["isolated"]["audited"], reports["isolated"]["findings"]
    assert reports["isolated"]["val_bpb"] == reports["in"]["val_bpb"]
    lines = _chunk_lines(tmp_path / "isolated")
    assert lines == _chunk_lines(tmp_path / "in")
    assert len({line["fp_after_prev_adapt"] for line in lines}) == 4  # the child's adapter did train


# ---------------------------------------------------------------- the hostile adapter


@pytest.fixture(scope="module")
def hostile(embedded: DataPaths, tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Validation data with the hostile entry's sentinel planted past the frontier, and its submission."""
    sys.path.insert(0, str(HERE))
    try:
        from hostile_entry import SENTINEL
    finally:
        sys.path.remove(str(HERE))
    root = tmp_path_factory.mktemp("hostile")
    tokens = read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:HOSTILE_TOKENS].copy()
    tokens[SENTINEL_AT : SENTINEL_AT + SENTINEL.size] = SENTINEL
    (root / "data").mkdir()
    write_shard(root / "data" / "fineweb_val_000000.bin", tokens)
    data = DataPaths(data_dir=root / "data", tokenizer_path=embedded.tokenizer_path, vocab_size=embedded.vocab_size)
    return {"root": root, "data": data, "artifact": tiny_artifact}  # type: ignore[dict-item]


def _hostile_run(hostile: dict, isolate: bool) -> tuple[list[dict], dict]:
    submission = hostile["root"] / ("isolated" if isolate else "in_process")
    submission.mkdir()
    shutil.copy(HERE / "hostile_entry.py", submission / "golf_entry.py")
    report = _evaluate(
        hostile["data"],
        hostile["artifact"],
        submission / "out",
        isolate,
        submission=submission,
        ttt="hostile",
        chunk_tokens=2048,
    )
    lines = [json.loads(line) for line in (submission / "hostile_report.jsonl").read_text().splitlines()]
    return lines, report


def test_hostile_adapter_in_process_finds_nothing_through_the_view_or_the_model(hostile: dict) -> None:
    """In-process, the frames and the heap still hold the validation array (the search works), but
    the view and the model no longer lead to it."""
    lines, report = _hostile_run(hostile, isolate=False)
    assert [(line["chunk"], line["frontier"], line["limit"]) for line in lines] == [(0, 2049, 2049 + SEQ_LEN)]
    hits = lines[0]["hits"]
    assert hits["view"] == [] and hits["model"] == []
    whole = f"sentinel: ndarray of ({HOSTILE_TOKENS},)"  # the evaluator's validation array itself
    assert whole in hits["frames"] and whole in hits["gc"], hits
    assert report["isolation"]["mode"] == "in-process" and report["complete"] is True


def test_hostile_adapter_under_isolate_finds_nothing(hostile: dict) -> None:
    lines, report = _hostile_run(hostile, isolate=True)
    assert [(line["chunk"], line["frontier"]) for line in lines] == [(0, 2049)]
    assert lines[0]["hits"] == {"view": [], "model": [], "frames": [], "gc": []}
    assert report["isolation"]["mode"] == "child-process"
    assert report["complete"] is True and report["audited"] is True, report["findings"]


READING_ENTRY = """
import os
from pathlib import Path


class Reader:
    name = "reader"

    def adapt(self, model, scored, chunk):
        outcome = []
        for path in os.environ["ISOLATION_TEST_READ"].split(os.pathsep):
            try:
                Path(path).read_bytes()
                outcome.append("read")
            except PermissionError as refusal:
                outcome.append(type(refusal).__name__)
        Path(__file__).with_name("reads.txt").write_text(" ".join(outcome))


def make_adapter(model, config):
    return Reader()
"""


def test_the_child_may_not_read_the_validation_shard_the_log_or_the_evaluators_memory(
    hostile: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the evaluator withholds by pipe it also withholds on disk and in /proc: each read is refused and filed."""
    submission = tmp_path / "reader"
    submission.mkdir()
    (submission / "golf_entry.py").write_text(READING_ENTRY)
    out = tmp_path / "out"
    shard = hostile["data"].data_dir / "fineweb_val_000000.bin"
    own = Path(f"/proc/{os.getpid()}/environ")  # the evaluator's process, seen from the child
    monkeypatch.setenv("ISOLATION_TEST_READ", os.pathsep.join([str(shard), str(out / "chunks.jsonl"), str(own)]))
    report = _evaluate(hostile["data"], hostile["artifact"], out, True, submission, ttt="reader", chunk_tokens=2048)
    assert (submission / "reads.txt").read_text() == "GuardRefusal GuardRefusal GuardRefusal"
    assert [(f["rule"], f["file"]) for f in report["findings"]] == [("PG302", "golf_entry.py")] * 3
    assert {a["target"] for a in report["guards"]["attempts"]} == {
        str(shard.resolve()),
        str((out / "chunks.jsonl").resolve()),
        str(own),
    }
    assert all("may not touch the validation data or the audit log" in f["message"] for f in report["findings"])
    assert report["audited"] is False


# ---------------------------------------------------------------- a failing or orphaned child


def test_a_crash_in_the_child_is_one_line_with_its_own_exit_code(
    hostile: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    submission = tmp_path / "crashing"
    submission.mkdir()
    (submission / "golf_entry.py").write_text(
        "from reference_model.quantize import model_from_artifact\n\n\n"
        "def load_model(artifact, device):\n"
        "    model = model_from_artifact(artifact)\n"
        "    model.forward_logits = lambda input_ids: 1 / 0\n"
        "    return model\n"
    )
    shutil.copy(hostile["artifact"], submission / "final_model.int8.ptz")
    data = hostile["data"]
    args = ["--data", str(data.data_dir), "--tokenizer", str(data.tokenizer_path), "--seq-len", str(SEQ_LEN)]
    code = main([str(submission), *args, "--out", str(tmp_path / "out"), "--quiet", "--isolate"])
    assert code == EXIT_SUBMISSION_PROCESS == 5
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert errors == ["golf-eval: error: the submission's process failed: ZeroDivisionError: division by zero"]


PICKLING_ENTRY = """
import gc
import pickle
from multiprocessing.connection import Connection

from reference_model.quantize import model_from_artifact


class Payload:
    def __reduce__(self):
        return (open, (MARK, "w"))  # runs wherever this is unpickled


def load_model(artifact, device):
    pipe = next(o for o in gc.get_objects() if isinstance(o, Connection))
    pipe.send_bytes(pickle.dumps(("ok", Payload())))
    return model_from_artifact(artifact)
"""


def test_what_the_child_sends_is_never_unpickled(hostile: dict, tmp_path: Path) -> None:
    """A submission that writes a pickle into the pipe gets no code run in the evaluator's process."""
    submission = tmp_path / "pickling"
    submission.mkdir()
    mark = tmp_path / "unpickled_in_the_evaluator"
    (submission / "golf_entry.py").write_text(PICKLING_ENTRY.replace("MARK", repr(str(mark))))
    with pytest.raises(IsolationError, match=r"not a \[kind, value\] JSON pair") as raised:
        _evaluate(hostile["data"], hostile["artifact"], tmp_path / "out", True, submission)
    assert raised.value.exit_code == EXIT_SUBMISSION_PROCESS
    assert not mark.exists()


def test_a_child_that_cannot_start_is_one_line(hostile: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /dev/shm cannot hold the logits buffer, the spawn fails: one line, exit 5, no traceback."""
    import multiprocessing.context

    def no_room(self: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", no_room)
    with pytest.raises(IsolationError) as raised:
        _evaluate(hostile["data"], hostile["artifact"], tmp_path / "out", True)
    assert str(raised.value) == (
        "could not start the submission's process with a 17 MB logits buffer: "
        "OSError: [Errno 28] No space left on device"
    )
    assert raised.value.exit_code == EXIT_SUBMISSION_PROCESS


ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from harness.evaluate.evaluator import EvalConfig
from harness.evaluate.isolation import isolated

if __name__ == "__main__":
    submission, artifact = Path(sys.argv[1]), Path(sys.argv[2])
    with isolated(submission, artifact, EvalConfig(seq_len=8), 100, 1024, [submission, artifact], [], []) as child:
        print(child._process.pid, flush=True)
        time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_child_dies_with_its_parent(tiny_artifact: Path, tmp_path: Path) -> None:
    submission = tmp_path / "slow"
    submission.mkdir()
    (submission / "golf_entry.py").write_text(
        "import time\n\n\ndef load_model(artifact, device):\n    time.sleep(120)\n"
    )
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(ORPHAN_SCRIPT))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(submission), str(tiny_artifact)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        parent.kill()
