"""Runtime probes: a look-ahead model is caught at the exact position, the reference model passes
with bit-identical logits, document isolation is checked only when claimed, and golf-eval puts
the probe results and the PG201 finding in report.json."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.cli.eval import main
from harness.data.embedded import DataPaths
from harness.data.shards import read_shard, write_shard
from harness.evaluate.fingerprint import Fingerprinter
from harness.evaluate.probes import DEFAULT_TOLERANCE, run_probes
from harness.evaluate.scored import RuntimeViolation
from harness.findings import Severity
from reference_model.model import GPT, GPTConfig
from reference_model.quantize import save_artifact

ENTRIES = Path(__file__).parent / "fixtures" / "entries"
VOCAB = 64
BOS = 1


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded; on a loaded machine OpenMP spinning costs seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_gpt(vocab: int = VOCAB) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.08)
    return model.eval()


def _leaky_module() -> object:
    spec = importlib.util.spec_from_file_location("h8_leaky_entry", ENTRIES / "leaky" / "golf_entry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream(length: int = 97, boundaries: tuple[int, ...] = (0, 30, 70)) -> np.ndarray:
    tokens = np.random.default_rng(5).integers(2, VOCAB, size=length)
    tokens[list(boundaries)] = BOS
    return tokens


class SmearModel(nn.Module):
    """Position t sees its own token and (gated) the previous one: the SmearGate shape of #1797.

    ``bos_masked`` is the #1855 fix: no mixing into a BOS position, so documents stay isolated.
    ``peek`` adds the *next* token instead: a two-sided smear that breaks causality.
    """

    document_isolation = True

    def __init__(self, bos_masked: bool, peek: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.embed = nn.Parameter(torch.randn(VOCAB, 8, generator=generator))
        self.head = nn.Parameter(torch.randn(8, VOCAB, generator=generator))
        self.bos_masked = bos_masked
        self.peek = peek

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed[input_ids]
        previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        if self.bos_masked:
            previous = previous * (input_ids != BOS).unsqueeze(-1)
        hidden = x + 0.5 * previous
        if self.peek:
            hidden = hidden + 0.5 * torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)
        return hidden @ self.head


def test_reference_model_is_causal_with_bit_identical_logits() -> None:
    model = _tiny_gpt()
    before = Fingerprinter()(model)
    report = run_probes(model, _stream(), seq_len=64)
    assert report.findings == []
    causality, isolation = report.results
    assert causality.status == "pass" and causality.details["max_abs_diff"] == 0.0
    assert [cut["cut"] for cut in causality.details["cuts"]][0] == 1
    assert causality.details["cuts"][-1]["cut"] == 63 and len(causality.details["cuts"]) == 8
    assert isolation.to_json() == {
        "name": "document_isolation",
        "rule": "PG203",
        "status": "skipped",
        "tolerance": DEFAULT_TOLERANCE,
        "reason": "the model does not claim document isolation",
    }
    assert Fingerprinter()(model) == before  # probing changed no state


def test_look_ahead_fixture_is_caught_at_the_position_before_each_cut() -> None:
    model = _leaky_module().LookAheadModel(_tiny_gpt())
    report = run_probes(model, torch.from_numpy(_stream()), seq_len=64, vocab_size=VOCAB, device="cpu", bos_id=BOS)
    [finding] = report.findings
    assert (finding.rule, finding.severity, finding.file, finding.line) == ("PG201", Severity.ERROR, "<model>", 0)
    assert finding.message.startswith(
        "logits at position 0 change when the input tokens at positions ≥ 1 change "
        "(max |Δlogit| 4 > tolerance 1e-05; 8 of 8 probed cuts leak)"
    )
    causality = report.results[0]
    assert causality.status == "fail"
    for cut in causality.details["cuts"]:
        assert cut["affected"] == [cut["cut"] - 1]  # exactly one position: the one that peeks
        assert cut["max_abs_diff"] == pytest.approx(4.0, abs=1e-4)
    json.dumps(report.to_json())  # JSON-able for report.json


def test_two_sided_smear_reports_its_first_leaking_position() -> None:
    report = run_probes(SmearModel(bos_masked=True, peek=True), _stream(), seq_len=40, positions=3, seed=1)
    causality = report.results[0]
    cuts = [cut["cut"] for cut in causality.details["cuts"]]
    assert cuts[0] == 1 and cuts[-1] == 39 and len(cuts) == 3
    assert all(cut["affected"] == [cut["cut"] - 1] for cut in causality.details["cuts"])
    assert [f.rule for f in report.findings] == ["PG201"]  # the peek stays inside each document
    assert report.results[1].status == "pass"


def test_unmasked_smear_claiming_isolation_leaks_into_the_next_documents_first_position() -> None:
    report = run_probes(SmearModel(bos_masked=False), _stream(), seq_len=64)
    assert report.results[0].status == "pass"  # causal: only the strict prefix is read
    isolation = report.results[1]
    assert isolation.status == "fail"
    assert isolation.details["boundary"] == 30 and isolation.details["synthetic_boundary"] is False
    assert isolation.details["affected"] == [30]  # only the BOS position mixes in token 29
    assert isolation.details["document_positions"] == [30, 64]
    [finding] = report.findings
    assert (finding.rule, finding.severity) == ("PG203", Severity.WARNING)
    assert finding.message.startswith(
        "the model claims document isolation, but the predictions at position 30 (document starting at BOS "
        "position 30) change when the previous document's last token (position 29) changes"
    )


def test_bos_masked_smear_is_isolated() -> None:
    report = run_probes(SmearModel(bos_masked=True), _stream(), seq_len=64)
    assert report.findings == []
    assert [r.status for r in report.results] == ["pass", "pass"]
    assert report.results[1].details["max_abs_diff"] == 0.0


def test_boundary_is_synthesized_when_the_window_has_none_and_claim_can_come_from_the_entry() -> None:
    tokens = _stream(boundaries=())
    model = SmearModel(bos_masked=False)
    model.document_isolation = False
    skipped = run_probes(model, tokens, seq_len=20)
    assert skipped.results[1].status == "skipped"
    report = run_probes(model, tokens, seq_len=20, document_isolation=True)
    isolation = report.results[1]
    assert isolation.details["synthetic_boundary"] is True and isolation.details["boundary"] == 10
    assert isolation.details["affected"] == [10]
    assert [f.rule for f in report.findings] == ["PG203"]


def test_model_that_cannot_run_probe_inputs_is_an_error_result_not_a_finding() -> None:
    class Broken(nn.Module):
        def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
            return torch.zeros(input_ids.shape[0], VOCAB)  # [B, V]: no positions

    report = run_probes(Broken(), _stream(), seq_len=16)
    assert report.findings == []
    assert report.results[0].status == "error"
    assert report.results[0].details["error"] == (
        "ValueError: model returned (3, 64) for input (3, 16); expected [B, T, V] logits"
    )


def test_guard_refusal_inside_the_model_propagates() -> None:
    class Refusing(nn.Module):
        def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
            raise RuntimeViolation("refused network access", "PG301")

    with pytest.raises(RuntimeViolation, match="refused network access"):
        run_probes(Refusing(), _stream(), seq_len=16)


def test_short_windows_are_skipped() -> None:
    report = run_probes(_tiny_gpt(), np.array([BOS]), seq_len=64)
    assert report.results[0].status == "skipped" and report.findings == []


def test_golf_eval_reports_the_leaky_entry(embedded: DataPaths, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    val = read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:129]
    write_shard(data / "fineweb_val_000000.bin", val)
    submission = tmp_path / "leaky"
    shutil.copytree(ENTRIES / "leaky", submission)
    save_artifact(_tiny_gpt(embedded.vocab_size).state_dict(), submission / "final_model.int8.ptz")
    out = tmp_path / "out"
    code = main(
        [
            str(submission),
            "--data",
            str(data),
            "--tokenizer",
            str(embedded.tokenizer_path),
            "--seq-len",
            "32",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    assert code == 1 and report["audited"] is False
    runtime = [f for f in report["findings"] if f["rule"] == "PG201" and f["file"] == "<model>"]
    assert len(runtime) == 1 and runtime[0]["message"].startswith("logits at position 0 change")
    causality = report["probes"]["results"][0]
    assert report["probes"]["available"] is True and report["probes"]["tolerance"] == DEFAULT_TOLERANCE
    assert causality["status"] == "fail" and causality["window_tokens"] == 32


ISOLATION_ENTRY = """
from reference_model.quantize import model_from_artifact

document_isolation = {claim}

def load_model(artifact_path, device):
    return model_from_artifact(artifact_path).to(device)
"""


@pytest.mark.parametrize("claim", ["True", "False", "'yes'"])
def test_the_entrys_document_isolation_claim_reaches_the_probe(claim: str, embedded: DataPaths, tmp_path: Path) -> None:
    """The reference model attends across BOS: claiming isolation in golf_entry.py makes that PG203."""
    from harness.errors import DataFormatError
    from harness.evaluate.evaluator import EvalConfig
    from harness.evaluate.pipeline import EvalRequest, run_evaluation

    data = tmp_path / "data"
    data.mkdir()
    write_shard(
        data / "fineweb_val_000000.bin", read_shard(sorted(embedded.data_dir.glob("fineweb_val_*.bin"))[0])[:129]
    )
    submission = tmp_path / "claims"
    submission.mkdir()
    (submission / "golf_entry.py").write_text(ISOLATION_ENTRY.format(claim=claim))
    save_artifact(_tiny_gpt(embedded.vocab_size).state_dict(), submission / "final_model.int8.ptz")
    request = EvalRequest(
        submission=submission,
        artifact=submission / "final_model.int8.ptz",
        data=DataPaths(data_dir=data, tokenizer_path=embedded.tokenizer_path, vocab_size=embedded.vocab_size),
        config=EvalConfig(seq_len=32, chunk_tokens=128),
        out_dir=tmp_path / "out",
    )
    if claim == "'yes'":
        with pytest.raises(
            DataFormatError,
            match="^golf_entry.py: document_isolation must be True or False "
            r"\(got 'yes'\)$",
        ):
            run_evaluation(request)
        return
    outcome = run_evaluation(request)
    isolation = outcome.report["probes"]["results"][1]
    assert isolation["name"] == "document_isolation"
    if claim == "False":
        assert isolation["status"] == "skipped" and outcome.findings == [] and outcome.audited is True
    else:
        assert isolation["status"] == "fail"
        assert [(f.rule, f.severity, f.file) for f in outcome.findings] == [("PG203", Severity.WARNING, "<model>")]
