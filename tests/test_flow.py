"""Unit tests of the data-flow engine: VAL vocabulary, call resolution, taint propagation,
loop classification (chunk vs epoch), effect ordering and the switch evaluator."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.check.flow import names as N
from harness.check.flow.functions import FunctionTable
from harness.check.flow.model import Cond, Effect, EffectKind
from harness.check.flow.taint import Engine
from harness.check.parse import ParsedSource, parse_source
from harness.check.switches import UNKNOWN
from harness.check.switches.conditions import Switches
from harness.submission import Setting, SourceFile


def parse(text: str, name: str = "train_gpt.py", entry: bool = True) -> ParsedSource:
    return parse_source(SourceFile(display_name=name, path=Path(name), text=textwrap.dedent(text), is_entry=entry))


def timeline(*sources: ParsedSource) -> list[Effect]:
    index = FunctionTable(list(sources))
    return Engine(index).timeline(index.top[index.modules[0]])


def kinds(effects: list[Effect]) -> list[tuple[str, int, bool]]:
    return [(e.kind.value, e.line, e.tainted) for e in effects]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("val_tokens", True),
        ("val_data.val_tokens", True),
        ("args.val_files", True),
        ("h.val_tokens_idx", True),
        ("val_np", True),
        ("args.val_batch_size", False),
        ("args.val_loss_every", False),
        ("val_loss", False),
        ("eval_seq_len", False),
        ("train_tokens", False),
    ],
)
def test_val_names_are_data_not_settings(name: str, expected: bool) -> None:
    assert N.is_val_name(name) is expected


@pytest.mark.parametrize(
    ("callee", "expected"),
    [
        ("load_validation_tokens", True),
        ("load_val_tokens", True),
        ("read_eval_shards", True),
        ("eval_val", False),
        ("load_interval", False),
        ("log_interval_tokens", False),
    ],
)
def test_val_loader_call_names(callee: str, expected: bool) -> None:
    assert N.is_val_loader_call(callee) is expected


def test_val_literals() -> None:
    assert N.is_val_literal("./data/fineweb_val_*.bin")
    assert N.is_val_literal("shards/val_000.bin")
    assert not N.is_val_literal("./data/fineweb_train_*.bin")
    assert not N.is_val_literal("interval.bin")


def test_calls_resolve_to_sibling_modules_nested_defs_and_unique_methods() -> None:
    entry = parse("""
        import ttt_helper as th
        from ttt_helper import adapt
        def outer():
            def inner():
                return 1
            return inner()
        class Runner:
            def go_ttt(self):
                return self.step_chunk()
            def step_chunk(self):
                return 2
    """)
    helper = parse("def adapt(m, t):\n    return t\ndef other():\n    return 0\n", "ttt_helper.py", entry=False)
    index = FunctionTable([entry, helper])
    module = index.modules[0]
    outer = index.functions[module]["outer"]
    go = index.classes[module]["Runner"]["go_ttt"]
    assert index.resolve("adapt", outer).file == "ttt_helper.py"
    assert index.resolve("th.other", outer).name == "other"
    assert index.resolve("inner", outer) is outer.nested["inner"]
    assert index.resolve("self.step_chunk", go).name == "step_chunk"
    assert index.resolve("runner.go_ttt", outer) is go
    assert index.resolve("opt.step", outer) is None
    assert index.resolve("torch.save", outer) is None


def test_taint_flows_through_slices_comprehensions_appends_and_returns() -> None:
    effects = timeline(
        parse("""
        import torch
        def batches_of(tokens, n):
            out = []
            for i in range(0, tokens.numel(), n):
                out.append(tokens[i : i + n])
            return out
        def main(val_tokens, model):
            rows = [b.cuda() for b in batches_of(val_tokens, 64)]
            stacked = torch.stack(rows)
            loss = model(stacked)
            loss.backward()
        main(None, None)
    """)
    )
    assert kinds(effects) == [("update", 12, True)]
    notes = [step.note for step in effects[0].taint.path]
    assert notes[0] == "VAL source: val_tokens"
    assert "enters batches_of(tokens)" in notes
    assert "loss = model(stacked)" in notes


def test_untainted_reassignment_clears_taint_but_branches_do_not() -> None:
    effects = timeline(
        parse("""
        def main(val_tokens, train_tokens, model, flag):
            x = val_tokens[:10]
            x = train_tokens[:10]
            model(x).backward()
            y = val_tokens[:10]
            if flag:
                y = train_tokens[:10]
            model(y).backward()
        main(1, 2, 3, 4)
    """)
    )
    assert kinds(effects) == [("update", 5, False), ("update", 9, True)]


def test_chunk_loops_advance_and_epoch_loops_do_not() -> None:
    effects = timeline(
        parse("""
        def ttt(model, val_tokens, epochs, n):
            for ci in range(n):
                chunk = val_tokens[ci * 64 : (ci + 1) * 64]
                for ep in range(epochs):
                    model(chunk).backward()
        ttt(1, 2, 3, 4)
    """)
    )
    (update,) = effects
    assert [(f.line, f.advancing, f.over_range) for f in update.loops] == [(3, True, True), (5, False, True)]


def test_while_loop_with_position_counter_advances() -> None:
    effects = timeline(
        parse("""
        def ttt(model, val_tokens):
            pos = 0
            while pos < val_tokens.numel():
                chunk = val_tokens[pos : pos + 64]
                model(chunk).backward()
                pos += 64
        ttt(1, 2)
    """)
    )
    assert [(f.advancing, f.over_range) for f in effects[0].loops] == [(True, False)]


def test_effects_of_callees_are_inlined_in_program_order_with_call_sites() -> None:
    effects = timeline(
        parse("""
        import torch
        def score(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens).item()
            return loss_sum
        def train(model, val_tokens):
            model(val_tokens).backward()
        def main(model, val_tokens):
            train(model, val_tokens)
            torch.save(model.state_dict(), "final_model.pt")
            print(f"val_bpb:{score(model, val_tokens)}")
        main(1, 2)
    """)
    )
    assert kinds(effects) == [("update", 9, True), ("artifact", 12, False), ("score", 6, True), ("score", 7, True)]
    assert [(c.line, c.note) for c in effects[0].calls] == [(14, "main(…)"), (11, "train(…)")]
    assert effects[0].functions == ("<module>", "main", "train")


def test_score_accumulator_must_reach_the_reported_value() -> None:
    effects = timeline(
        parse("""
        def ttt_adapt(model, val_tokens):
            running = 0.0
            kept = 0.0
            for s in range(10):
                loss = model(val_tokens[s : s + 8])
                running += loss.item()
                kept += loss.item()
                loss.backward()
            print(f"ttt loss {running}")
            return kept
        ttt_adapt(1, 2)
    """)
    )
    assert kinds(effects) == [("score", 8, True), ("update", 9, True)]


def test_collective_gather_fills_its_output_argument() -> None:
    effects = timeline(
        parse("""
        import torch.distributed as dist
        def phase(model, val_tokens):
            scored = [val_tokens[:8]]
            gathered = [None, None]
            dist.all_gather_object(gathered, scored)
            for docs in gathered:
                model(docs).backward()
        phase(1, 2)
    """)
    )
    assert kinds(effects) == [("update", 8, True)]
    assert "gathered ← dist.all_gather_object(…)" in [s.note for s in effects[0].taint.path]


def test_calibration_by_hooks_and_by_matmul_accumulation() -> None:
    effects = timeline(
        parse("""
        def stats(model, batches):
            acc = {}
            def hook(mod, inp, out):
                acc[mod] = acc.get(mod, 0) + inp[0].T @ inp[0]
            model.register_forward_hook(hook)
            for b in batches:
                model(b)
            return acc
        def hess(val_tokens):
            H = 0
            x = val_tokens[:64].float()
            H += x.T @ x
            return H
        def main(model, val_tokens):
            stats(model, [val_tokens[:64]])
            hess(val_tokens)
        main(1, 2)
    """)
    )
    assert kinds(effects) == [("calibration", 8, True), ("calibration", 13, True)]


def test_val_field_of_a_minified_config_class_is_a_source() -> None:
    effects = timeline(
        parse("""
        import glob
        class H:
            v = "./data/fineweb_val_*.bin"
        def main(m):
            h = H()
            t = glob.glob(h.v)
            m(t).backward()
        main(1)
    """)
    )
    assert kinds(effects) == [("update", 8, True)]
    assert effects[0].taint.path[0].note == "VAL source: h.v (field H.v holds a validation path)"


def switches_for(text: str, settings: dict[str, Setting] | None = None) -> tuple[Switches, ParsedSource]:
    parsed = parse(text)
    return Switches([parsed], settings or {}), parsed


def expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


def test_switch_values_follow_defaults_and_documented_settings() -> None:
    text = """
        import os
        class Hyperparameters:
            ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
            ttt_epochs = int(os.environ.get("TTT_EPOCHS", 3))
            mode = os.getenv("TTT_MODE", "lora").lower()
            flag = os.environ.get("PREQUANT", "false").lower() in ("1", "true")
    """
    default, _ = switches_for(text)
    assert default.evaluate(expr("args.ttt_enabled")).value is False
    assert default.evaluate(expr("h.ttt_epochs > 5 and not args.ttt_enabled")).value is False
    assert default.evaluate(expr("h.ttt_epochs > 0 and not args.ttt_enabled")).value is True
    assert default.evaluate(expr("args.mode == 'lora'")).value is True
    assert default.evaluate(expr("args.flag or args.ttt_epochs >= 3")).value is True
    assert default.evaluate(expr("args.unknown_thing")).value is UNKNOWN
    assert default.evaluate(expr("args.flag or args.ttt_enabled")).documented == []  # code defaults only
    readme = Setting("TTT_ENABLED", "1", "README.md", 14, "readme")
    enabled, _ = switches_for(
        text, {"TTT_ENABLED": readme, "PREQUANT": Setting("PREQUANT", "True", "run.sh", 2, "script")}
    )
    assert enabled.evaluate(expr("args.ttt_enabled")).value is True
    both = enabled.evaluate(expr("args.ttt_enabled and args.flag"))
    assert both.value is True and [s.name for s in both.documented] == ["TTT_ENABLED", "PREQUANT"]


def test_switch_outcome_names_the_setting_or_the_default() -> None:
    text = 'import os\nTTT_ENABLED = int(os.environ.get("TTT_ENABLED", "0"))\n'
    off, parsed = switches_for(text)
    cond = (Cond(parsed, expr("TTT_ENABLED"), True, 7),)
    outcome = off.outcome(cond)
    assert (outcome.runs, outcome.disabled_by) == (
        False,
        "`TTT_ENABLED` at train_gpt.py:7 is false with the code defaults (no documented run sets it)",
    )
    setting = Setting("TTT_ENABLED", "1", "README.md", 14, "readme")
    on, parsed = switches_for(text, {"TTT_ENABLED": setting})
    outcome = on.outcome((Cond(parsed, expr("TTT_ENABLED"), True, 7),))
    assert outcome.runs and outcome.enabled_by == [setting]
    ranged = on.outcome((Cond(parsed, expr("0"), True, 9, range_count=True),))
    assert not ranged.runs


def test_conflicting_assignments_make_a_switch_unknown() -> None:
    text = """
        import os
        class Hyperparameters:
            ttt_epochs = int(os.environ.get("TTT_EPOCHS", 3))
        def main(args):
            args.ttt_epochs = 0
    """
    switches, _ = switches_for(text)
    assert switches.evaluate(expr("args.ttt_epochs")).value is UNKNOWN


def test_effect_kinds_cover_selection() -> None:
    effects = timeline(
        parse("""
        import copy
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            loss_sum += model(val_tokens).item()
            return loss_sum
        def main(model, val_tokens, best):
            val_loss = eval_val(model, val_tokens)
            if val_loss < best:
                state = copy.deepcopy(model.state_dict())
            for ci in range(len(val_tokens)):
                if ci == 0:
                    model.load_state_dict(state)
        main(1, 2, 3)
    """)
    )
    assert [e.kind for e in effects] == [EffectKind.SCORE, EffectKind.SCORE, EffectKind.SELECTION]
    assert effects[2].line == 9


def test_score_is_placed_where_its_value_was_produced() -> None:
    effects = timeline(
        parse("""
        def eval_lora(model, val_tokens, n):
            loss_sum = 0.0
            for ci in range(n):
                x = val_tokens[ci * 64 : (ci + 1) * 64]
                ptl = model(x)
                ptl.mean().backward()
                loss_sum += ptl.detach().sum().item()
                again = model(x)
                loss_sum += again.sum().item()
            return loss_sum
        eval_lora(1, 2, 3)
    """)
    )
    assert kinds(effects) == [("score", 8, True), ("update", 7, True), ("score", 10, True), ("score", 11, True)]


def test_instances_of_a_class_that_loads_validation_data_are_val() -> None:
    effects = timeline(
        parse("""
        import glob
        class Data:
            def __init__(self, h):
                self.tokens = load(sorted(glob.glob(h.val_files)))
        class Config:
            val_files = "./data/fineweb_val_*.bin"
            lr = 0.1
        def main(model):
            cfg = Config()
            d = Data(cfg)
            model(d.tokens).backward()
            model(cfg.lr).backward()
        main(1)
    """)
    )
    assert kinds(effects) == [("update", 12, True), ("update", 13, False)]
    assert effects[0].taint.path[0].note == "VAL source: h.val_files"
    assert "d.tokens set by Data(…)" in [step.note for step in effects[0].taint.path]


def test_tuples_dicts_and_literal_keys_keep_train_and_val_apart() -> None:
    effects = timeline(
        parse("""
        import glob, torch
        def load_both(pattern_train, pattern_val):
            train = torch.load(pattern_train)
            val = torch.load(sorted(glob.glob(pattern_val))[0])
            return train, val
        def main(model, h):
            train_tokens, val_tokens = load_both(h.train_files, h.val_files)
            data = {"train": train_tokens, "val": val_tokens}
            cache = {}
            cache["tr"] = train_tokens
            cache["va"] = val_tokens
            a, b = train_tokens, val_tokens
            model(data["train"]).backward()
            model(cache["tr"]).backward()
            model(a).backward()
            model(data["val"]).backward()
            model(cache["va"]).backward()
            model(b).backward()
        main(1, 2)
    """)
    )
    assert [(e.line, e.tainted) for e in effects] == [
        (14, False),
        (15, False),
        (16, False),
        (17, True),
        (18, True),
        (19, True),
    ]


def test_compiled_alias_of_a_submission_function_is_inlined_where_it_is_called() -> None:
    effects = timeline(
        parse("""
        import torch
        def train_step(model, x):
            model(x).backward()
        def main(model, val_tokens):
            step = torch.compile(train_step)
            same = train_step
            step(model, val_tokens[:8])
            same(model, val_tokens[8:16])
        main(1, 2)
    """)
    )
    assert [(e.kind.value, e.line, e.tainted, e.calls[-1].line) for e in effects] == [
        ("update", 4, False, 6),
        ("update", 4, True, 8),
        ("update", 4, True, 9),
    ]


def test_generators_of_val_batches_taint_the_callers_loop() -> None:
    effects = timeline(
        parse("""
        def batches(tokens, n):
            for i in range(0, tokens.numel(), n):
                yield tokens[i : i + n]
        def main(model, val_tokens):
            for x in batches(val_tokens, 64):
                model(x).backward()
        main(1, 2)
    """)
    )
    assert kinds(effects) == [("update", 7, True)]


def test_methods_of_known_instances_resolve_even_with_generic_names() -> None:
    effects = timeline(
        parse("""
        class PreQuantTTT:
            def __init__(self, tokens):
                self.tokens = tokens
            def run(self, model):
                for i in range(0, 100, 10):
                    model(self.tokens[i : i + 10]).backward()
        def main(model, val_tokens):
            PreQuantTTT(val_tokens).run(model)
            ttt = PreQuantTTT(val_tokens)
            ttt.run(model)
        main(1, 2)
    """)
    )
    assert [(e.line, e.tainted, e.calls[-1].line) for e in effects] == [(7, True, 9), (7, True, 11)]


def test_a_trainer_holding_val_data_for_logging_still_trains_on_training_batches() -> None:
    effects = timeline(
        parse("""
        class Trainer:
            def __init__(self, model, loader, val_data):
                self.model = model
                self.loader = loader
                self.val_data = val_data
            def train(self):
                for step in range(10):
                    x, y = self.loader.next_batch()
                    self.model(x, y).backward()
            def evaluate(self):
                s = 0.0
                s += self.model(self.val_data.val_tokens).item()
                return s
        def main(model, loader, val_data):
            t = Trainer(model, loader, val_data)
            t.train()
            print(f"val_bpb {t.evaluate()}")
        main(1, 2, 3)
    """)
    )
    assert kinds(effects) == [("update", 10, False), ("score", 13, True), ("score", 14, True)]


def test_nested_training_closure_reads_the_chunk_of_its_enclosing_loop() -> None:
    effects = timeline(
        parse("""
        import torch
        def eval_ttt(model, val_tokens, n):
            loss_sum = 0.0
            for ci in range(n):
                chunk = val_tokens[ci * 64 : (ci + 1) * 64]
                with torch.no_grad():
                    loss_sum += model(chunk).sum().item()
                def train_chunk():
                    for ep in range(3):
                        model(chunk).mean().backward()
                train_chunk()
            return loss_sum
        eval_ttt(1, 2, 3)
    """)
    )
    update = next(e for e in effects if e.kind is EffectKind.UPDATE)
    assert [(f.line, f.advancing) for f in update.loops] == [(5, True), (10, False)]


def test_valid_prefix_means_non_padding_not_validation() -> None:
    assert not N.is_val_name("valid_tokens")
    assert not N.is_val_name("batch.valid_ids")
    assert N.is_val_name("validation_tokens")


FIXTURE_TEXTS = [p.read_text() for p in sorted((Path(__file__).parent / "fixtures" / "code").rglob("*.py"))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixture_sources_never_crash_the_rule_family(data: st.DataObject) -> None:
    """Deleting, duplicating or truncating lines of real-shaped programs must give findings or
    nothing — never an exception (the engine turns a family crash into PG000)."""
    from harness.check import rules_ttt
    from harness.check.context import CheckContext
    from harness.check.parse import ParseFailure
    from harness.submission import Submission

    lines = data.draw(st.sampled_from(FIXTURE_TEXTS)).split("\n")
    for _ in range(data.draw(st.integers(0, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()):
            del lines[index]
        else:
            lines.insert(index, lines[data.draw(st.integers(0, len(lines) - 1))])
    text = "\n".join(lines[: data.draw(st.integers(1, len(lines)))])
    source = SourceFile(display_name="train_gpt.py", path=Path("train_gpt.py"), text=text, is_entry=True)
    try:
        parsed = parse_source(source)
    except ParseFailure:
        return
    findings = rules_ttt.check(
        CheckContext(submission=Submission(root=Path("."), name="x", sources=[source]), parsed=[parsed])
    )
    assert all(f.rule in rules_ttt.RULES + ("PG000",) and f.line >= 0 for f in findings)


def test_switch_aliases_are_followed_and_loop_or_parameter_names_are_unknown() -> None:
    text = """
        import os
        class Hyperparameters:
            ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
        def main(h, epoch):
            run_ttt = h.ttt_enabled and h.world_size_ok
            for phase in range(3):
                pass
    """
    switches, _ = switches_for(text)
    assert switches.evaluate(expr("run_ttt")).value is False
    assert switches.evaluate(expr("phase == 0")).value is UNKNOWN
    assert switches.evaluate(expr("epoch")).value is UNKNOWN


def test_per_document_and_concatenated_score_accumulators() -> None:
    effects = timeline(
        parse("""
        import torch
        def eval_docs(model, val_tokens, doc_ids, n):
            doc_nll = torch.zeros(n)
            counts = torch.zeros(n)
            all_nll = torch.zeros(0)
            for i in range(n):
                nll = model(val_tokens[i : i + 8])
                doc_nll[doc_ids[i]] += nll.sum()
                counts[val_tokens[i]] += 1
                all_nll = torch.cat([all_nll, nll])
            return doc_nll.sum() / all_nll.numel(), counts
        eval_docs(1, 2, 3, 4)
    """)
    )
    assert [(e.kind.value, e.line) for e in effects] == [("score", 9), ("score", 11), ("score", 12)]


def test_a_no_grad_forward_on_the_chunk_counts_as_its_score() -> None:
    effects = timeline(
        parse("""
        import torch
        def run(model, val_tokens, n):
            results = []
            for ci in range(n):
                x = val_tokens[ci * 64 : (ci + 1) * 64]
                with torch.no_grad():
                    out = model.forward_chunk(x)
                    n_tok = x.numel()
                results.append(out)
                model(x).mean().backward()
            return results
        run(1, 2, 3)
    """)
    )
    assert [(e.kind.value, e.line) for e in effects] == [("score", 8), ("update", 11)]
    assert effects[0].note == "scored under no_grad into out"


def test_a_parameter_named_like_a_field_does_not_blur_the_field() -> None:
    text = """
        import os
        class Hyperparameters:
            ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
        def eval_ttt(args, ttt_enabled=True):
            return ttt_enabled
    """
    switches, _ = switches_for(text)
    assert switches.evaluate(expr("args.ttt_enabled")).value is False
    assert switches.evaluate(expr("ttt_enabled")).value is UNKNOWN
