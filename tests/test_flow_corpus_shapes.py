"""PG101–PG106 on shapes the labeled corpus (issue #12) showed mis-judged, each rewritten here as
a small program of its own: a helper that prepends a document start to a list of positions
(#1953-style phased TTT, false PG103), a training loop whose batch names are reused by a later
val fine-tuning loop (#672, PG105 instead of PG101), a token loader wrapping a shard stream
over the validation files handed to a Hessian collector (#728, missed PG106), a README that
links the val shard under a training-shard name (#44) or points TRAIN_FILES at it (#179), and a
documented helper program compressing val tokens into a shipped blob (#168, "paid prefix")."""

from __future__ import annotations

from pathlib import Path

from harness.check import rules_ttt
from harness.check.context import CheckContext
from harness.check.parse import parse_source
from harness.findings import Finding, Severity
from harness.submission import SourceFile, Submission
from tests.test_rules_ttt import check_text


def _serious(findings: list[Finding]) -> set[tuple[str, str, int]]:
    return {(f.rule, f.severity.value, f.line) for f in findings if f.severity is not Severity.INFO}


def _line(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# ---------------------------------------------------------------- #1953: positions, not a score
PHASED = """import math
import os

import torch


class Hyperparameters:
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    chunk = int(os.environ.get("TTT_CHUNK", 4096))
    epochs = int(os.environ.get("GLOBAL_TTT_EPOCHS", 1))
    bos = int(os.environ.get("BOS_ID", 1))


def load_validation_tokens(pattern):
    return torch.load(pattern)


def doc_boundaries(starts, total):
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return torch.tensor(starts + [total], dtype=torch.int32)


def eval_phased(args, model, val_tokens):
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    for ci in range(n_chunks):
        local = val_tokens[ci * args.chunk : (ci + 1) * args.chunk + 1]
        x, y = local[:-1], local[1:]
        with torch.no_grad():
            cu = doc_boundaries((x == args.bos).nonzero().flatten().tolist(), x.numel())
            loss_sum += model(x[None], y[None], cu).double() * y.numel()
            count += y.numel()
        if ci == n_chunks - 1:
            break
        for _ in range(args.epochs):
            cu = doc_boundaries((x == args.bos).nonzero().flatten().tolist(), x.numel())
            {extra}
            loss = model(x[None], y[None], cu)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (loss_sum / count).item() / math.log(2.0)


def main():
    args = Hyperparameters()
    model = torch.load("final_model.pt", weights_only=False)
    val_tokens = load_validation_tokens(args.val_files)
    print(f"quantized_ttt_phased_exact val_bpb:{eval_phased(args, model, val_tokens):.8f}")


if __name__ == "__main__":
    main()
"""


def test_1953_prepending_a_document_start_to_positions_is_no_score() -> None:
    """Score-first phased TTT whose boundary helper runs ``starts = [0] + starts`` in both the
    scoring pass and the training epochs: the helper adds no VAL-derived value to anything."""
    legal = PHASED.replace("{extra}", "pass")
    assert _serious(check_text(legal)) == set()


def test_1953_twin_a_loss_accumulated_inside_the_training_epochs_is_a_rescore() -> None:
    illegal = PHASED.replace("{extra}", "loss_sum = loss_sum + model(x[None], y[None], cu).double() * y.numel()")
    found = _serious(check_text(illegal))
    assert ("PG103", "error", _line(illegal, "loss_sum = loss_sum + model(")) in found


# ---------------------------------------------------- #672: val batch names reused after training
COSINE_TTT = """import math
import os

import torch


class Hyperparameters:
    train_files = os.environ.get("TRAIN_FILES", "./data/fineweb_train_*.bin")
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    iterations = int(os.environ.get("ITERATIONS", 100))
    seq_len = int(os.environ.get("SEQ_LEN", 1024))


class Loader:
    def __init__(self, pattern):
        self.tokens = torch.load(pattern)

    def next_batch(self, n):
        chunk = self.tokens[: n + 1]
        return chunk[:-1][None], chunk[1:][None]


def load_validation_tokens(pattern):
    return torch.load(pattern)


def eval_val_sliding(model, val_tokens, seq_len):
    loss_sum, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, val_tokens.numel() - seq_len, seq_len):
            chunk = val_tokens[start : start + seq_len + 1]
            loss_sum += model(chunk[:-1][None], chunk[1:][None]).item() * seq_len
            count += seq_len
    return loss_sum / count


def main():
    args = Hyperparameters()
    model = torch.load("init.pt", weights_only=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_loader = Loader(args.train_files)
    for step in range(args.iterations):
        x, y = train_loader.next_batch(args.seq_len)
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.save(model.state_dict(), "final_model.pt")
    val_tokens = load_validation_tokens(args.val_files)
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", 30))
    if ttt_epochs > 0:
        ttt_opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
        for ep in range(ttt_epochs):
            for bs in range(0, val_tokens.numel() - args.seq_len, args.seq_len):
                local = val_tokens[bs : bs + args.seq_len + 1]
                x = local[:-1][None]
                y = local[1:][None]
                loss = model(x, y)
                ttt_opt.zero_grad()
                loss.backward()
                ttt_opt.step()
    val_loss = eval_val_sliding(model, val_tokens, args.seq_len)
    print(f"final_sliding_window_exact val_loss:{val_loss:.8f} val_bpb:{val_loss / math.log(2.0):.8f}")


if __name__ == "__main__":
    main()
"""


def test_672_val_fine_tuning_reusing_the_training_batch_names_is_train_then_score() -> None:
    """``x, y`` come from the training loader in the training loop; the later TTT loop rebinds
    them to val slices inside ``if ttt_epochs > 0:``. The update trains on val and the sliding
    evaluation then scores it: PG101, not "val batches in the training loop" (PG105)."""
    found = _serious(check_text(COSINE_TTT))
    backward = [i for i, line in enumerate(COSINE_TTT.splitlines(), 1) if "loss.backward()" in line][1]
    assert ("PG101", "error", backward) in found
    assert not any(rule == "PG105" for rule, _, _ in found)


def test_672_twin_training_batches_that_stay_training_batches_are_not_val() -> None:
    """Rebinding in one branch does not clear the other: ``x`` fed by the training loader on the
    ``else`` path still mixes into an update that also reads VAL (the PG105 shape stays)."""
    mixed = COSINE_TTT.replace(
        "                x = local[:-1][None]\n",
        "                if ep % 2:\n                    x = local[:-1][None]\n"
        "                else:\n                    x = torch.cat([x, local[:-1][None]])\n",
    )
    found = _serious(check_text(mixed))
    assert any(rule == "PG105" for rule, _, _ in found)


# --------------------------------------------- #728: loader over val files handed to the collector
CALIB = """import glob
import io
import lzma
import os

import numpy as np
import torch


class Hyperparameters:
    val_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_val_*.bin")
    train_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_train_*.bin")
    calib_batches = int(os.environ.get("GPTQ_CALIB_BATCHES", 64))


class ShardStream:
    def __init__(self, pattern):
        self.files = sorted(glob.glob(pattern))
        self.tokens = torch.from_numpy(np.fromfile(self.files[0], dtype="<u2", offset=1024).astype(np.int64))
        self.pos = 0

    def take(self, n):
        out = self.tokens[self.pos : self.pos + n]
        self.pos += n
        return out


class TokenLoader:
    def __init__(self, pattern, rank):
        self.rank = rank
        self.stream = ShardStream(pattern)

    def next_batch(self, n, seq_len):
        chunk = self.stream.take(n + 1)
        return chunk[:-1].view(-1, seq_len), chunk[1:].view(-1, seq_len)


def collect_hessians(model, loader, num_batches):
    hessians, hooks = {}, []

    def make_hook(name):
        def hook(module, inp, out):
            x = inp[0].reshape(-1, inp[0].shape[-1]).float()
            if name not in hessians:
                hessians[name] = torch.zeros(x.shape[1], x.shape[1])
            hessians[name] += x.T @ x
        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(make_hook(name)))
    with torch.no_grad():
        for _ in range(num_batches):
            x, y = loader.next_batch(4096, 1024)
            model(x, y)
    for h in hooks:
        h.remove()
    return hessians


def quantize_gptq(state_dict, hessians):
    return {k: (v * 31).round().to(torch.int8) for k, v in state_dict.items()}


def main():
    args = Hyperparameters()
    model = torch.load("trained_fp32.pt", weights_only=False)
    calib_loader = TokenLoader(args.{files}, 0)
    hessians = collect_hessians(model, calib_loader, args.calib_batches)
    buf = io.BytesIO()
    torch.save(quantize_gptq(model.state_dict(), hessians), buf)
    with open("final_model.int6.ptz", "wb") as f:
        f.write(lzma.compress(buf.getvalue()))


if __name__ == "__main__":
    main()
"""


def test_728_hessians_from_a_loader_over_the_val_files_passed_to_a_helper() -> None:
    """The loader keeps the tokens one object down (``self.stream.tokens``) and is handed to
    the collector, whose ``loader.next_batch`` resolves through the caller's class."""
    illegal = CALIB.replace("{files}", "val_files")
    assert ("PG106", "error", _line(illegal, "            model(x, y)")) in _serious(check_text(illegal))


def test_728_twin_the_same_loader_over_the_training_files_is_no_calibration_on_val() -> None:
    legal = CALIB.replace("{files}", "train_files")
    assert _serious(check_text(legal)) == set()


# ------------------------------------------- #44/#179: the documented setup trains on val shards
TRAINER = """import os

import torch


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.environ.get("TRAIN_FILES", os.path.join(data_path, "fineweb_train_*.bin"))
    val_files = os.path.join(data_path, "fineweb_val_*.bin")


def main():
    args = Hyperparameters()
    model = torch.nn.Linear(8, 8)
    tokens = torch.load(args.train_files)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(100):
        model(tokens[step : step + 8].float()).sum().backward()
        opt.step()
    torch.save(model.state_dict(), "final_model.pt")


if __name__ == "__main__":
    main()
"""


def _folder_check(tmp_path: Path, files: dict[str, str]) -> list[Finding]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    sources = [
        SourceFile(display_name=name, path=tmp_path / name, text=text, is_entry=name == "train_gpt.py")
        for name, text in sorted(files.items(), key=lambda kv: kv[0] != "train_gpt.py")
        if name.endswith(".py")
    ]
    submission = Submission(root=tmp_path, name=tmp_path.name, sources=sources, files=sorted(files))
    return rules_ttt.check(CheckContext(submission=submission, parsed=[parse_source(s) for s in sources]))


def test_44_readme_linking_the_val_shard_as_a_training_shard_is_val_training(tmp_path: Path) -> None:
    readme = (
        "# Val-only\n\n```bash\nmkdir -p data/valonly\n"
        "ln -s ../fineweb10B_sp1024/fineweb_val_000000.bin data/valonly/fineweb_train_000000.bin\n"
        "ln -s ../fineweb10B_sp1024/fineweb_val_000000.bin data/valonly/fineweb_val_000000.bin\n"
        "DATA_PATH=data/valonly torchrun --nproc_per_node=8 train_gpt.py\n```\n"
    )
    found = _serious(_folder_check(tmp_path, {"train_gpt.py": TRAINER, "README.md": readme}))
    assert ("PG105", "error", 5) in found
    assert ("PG105", "error", 6) not in found  # val linked under its own name is just a data path


def test_179_training_files_setting_pointed_at_val_is_val_training(tmp_path: Path) -> None:
    readme = "# Run\n\n```bash\nTRAIN_FILES=fineweb_val_*.bin\nVAL_BATCH_SIZE=524288\n```\n"
    found = _serious(_folder_check(tmp_path, {"train_gpt.py": TRAINER, "README.md": readme}))
    assert ("PG105", "error", 4) in found


def test_44_twin_a_readme_preparing_ordinary_shards_is_clean(tmp_path: Path) -> None:
    readme = (
        "# Run\n\n```bash\nln -s /data/fineweb_train_000001.bin data/fineweb_train_000001.bin\n"
        "cp /data/fineweb_val_000000.bin data/\nVAL_FILES=fineweb_val_*.bin torchrun train_gpt.py\n```\n"
    )
    assert _serious(_folder_check(tmp_path, {"train_gpt.py": TRAINER, "README.md": readme})) == set()


# ------------------------------------------------ #168: a documented helper program ships val
BLOB = """import lzma
import sys

import numpy as np


def load_val_tokens(directory):
    return np.fromfile(directory + "/fineweb_val_000000.bin", dtype="<u2", offset=1024)


def main():
    tokens = load_val_tokens(sys.argv[1])
    blob = lzma.compress(tokens[1:].tobytes(), preset=9)
    with open("prefix_blob.xz", "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
"""


def test_168_a_documented_helper_compressing_val_tokens_into_a_blob_ships_val(tmp_path: Path) -> None:
    readme = "# Paid prefix\n\nBuild the blob with `python make_blob.py ./data` and ship it beside the model.\n"
    found = _folder_check(tmp_path, {"train_gpt.py": TRAINER, "make_blob.py": BLOB, "README.md": readme})
    assert ("PG105", "error", _line(BLOB, "lzma.compress(")) in _serious(found)
    assert any("make_blob.py, a program of its own" in f.message for f in found if f.rule == "PG105")


def test_168_twin_an_undocumented_helper_stays_an_unreached_note(tmp_path: Path) -> None:
    found = _folder_check(tmp_path, {"train_gpt.py": TRAINER, "make_blob.py": BLOB, "README.md": "# Model\n"})
    assert _serious(found) == set()
    assert any(f.rule == "PG105" and f.severity is Severity.INFO for f in found)


# ----------------------------------- residual updates in a model's forward are not running totals
RESIDUAL = """import math
import os

import torch


class Hyperparameters:
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    chunk = int(os.environ.get("TTT_CHUNK", 4096))
    epochs = int(os.environ.get("TTT_EPOCHS", 3))


class GPT(torch.nn.Module):
    def __init__(self, dim, vocab, layers):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(dim, dim) for _ in range(layers)])
        self.head = torch.nn.Linear(dim, vocab)

    def forward_logits(self, ids):
        x = self.emb(ids)
        skips = []
        for block in self.blocks:
            skips.append(x)
            x = x + block(x)
        x = x + skips.pop()
        return self.head(x)


def eval_score_first(args, model, val_tokens):
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    n_chunks = (val_tokens.numel() - 1) // args.chunk
    for ci in range(n_chunks):
        local = val_tokens[ci * args.chunk : (ci + 1) * args.chunk + 1]
        x, y = local[:-1][None], local[1:][None]
        with torch.no_grad():
            logits = model.forward_logits(x)
            loss_sum += torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum").double()
            count += y.numel()
        if ci == n_chunks - 1:
            break
        for _ in range(args.epochs):
            loss = torch.nn.functional.cross_entropy(model.forward_logits(x)[0], y[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (loss_sum / count).item() / math.log(2.0)


def main():
    args = Hyperparameters()
    model = torch.load("final_model.pt", weights_only=False)
    val_tokens = torch.load(args.val_files)
    print(f"legal_ttt_exact val_bpb:{eval_score_first(args, model, val_tokens):.8f}")


if __name__ == "__main__":
    main()
"""


def test_residual_updates_in_the_forward_of_a_ttt_trained_model_are_no_score() -> None:
    """Score-first TTT with several epochs on each scored chunk (#549 precedent) through a model
    whose forward adds each block's output and a skip taken from an earlier ``x`` back into
    ``x``: those additions are hidden-state updates, not a score re-taken in the epoch loop."""
    assert {r for r in _serious(check_text(RESIDUAL)) if r[0].startswith("PG1")} == set()


def test_13_short_score_words_match_only_whole_name_parts() -> None:
    from harness.check.flow.names import SCORE_LIST_NAME

    assert not any(SCORE_LIST_NAME.search(n) for n in ("device", "sequence", "slice_buf", "nbits", "place"))
    assert all(SCORE_LIST_NAME.search(n) for n in ("tok_lp", "lps", "ce_sum", "all_nll", "tok_losses", "bits_sum"))
