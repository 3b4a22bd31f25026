"""The name vocabularies match whole identifier words, never substrings (issue #13: ``lp|ce``
matched ``slice_buf``, ``device`` and ``sequence``)."""

from __future__ import annotations

import importlib

import pytest

from harness.check.flow import names as N
from harness.check.words import any_word, first_word, last_word, words


@pytest.mark.parametrize(
    ("identifier", "split"),
    [
        ("tok_losses", "_tok_losses_"),
        ("tokLosses", "_tok_losses_"),
        ("NLLSum", "_nll_sum_"),
        ("__val_tokens__", "_val_tokens_"),
        ("VAL_TOKENS", "_val_tokens_"),
        ("bz2.BZ2Compressor", "_bz2_bz2_compressor_"),
        ("int8_state", "_int8_state_"),
    ],
)
def test_identifiers_split_into_words(identifier: str, split: str) -> None:
    assert words(identifier) == split


@pytest.mark.parametrize("name", ["device", "sequence", "slice_buf", "nbits", "place", "receive", "help_text"])
def test_short_score_words_do_not_match_inside_other_words(name: str) -> None:
    assert not N.SCORE_LIST_NAME.search(name)


@pytest.mark.parametrize(
    "name",
    ["tok_lp", "lps", "ce_sum", "all_nll", "tok_losses", "bits_sum", "totalloss", "tokLosses", "val_bpb", "logProbs"],
)
def test_real_score_list_names_still_match(name: str) -> None:
    assert N.SCORE_LIST_NAME.search(name)


def test_validation_sources_are_data_not_settings() -> None:
    for name in ("val_tokens", "valTokens", "args.val_files", "self.val_data.val_tokens", "_val_buf"):
        assert N.is_val_name(name), name
    for name in ("val_batch_size", "val_loss_every", "valid_tokens", "interval_tokens", "eval_tokens_seen"):
        assert not N.is_val_name(name), name
    assert N.is_val_loader_call("load_validation_tokens")
    assert N.is_val_loader_call("read_val_shard")
    assert not N.is_val_loader_call("eval_val_loader")
    assert not N.is_val_loader_call("reload_values")


def test_sanitizer_and_sink_words_are_anchored() -> None:
    assert N.WARMUP_WORD.search("warmup_steps") and N.WARMUP_WORD.search("rewarm_on_cap")
    assert not N.WARMUP_WORD.search("swarm_agents")
    for name in ("n_tokens", "tokcount", "seqlen", "byte_count", "num_scored", "n"):
        assert N.DENOMINATOR_NAME.search(name), name
    for name in ("blend", "silent_loss", "filename", "challenge"):
        assert not N.DENOMINATOR_NAME.search(name), name
    assert N.SCORE_FUNCTION.search("eval_val_sliding") and N.SCORE_FUNCTION.search("rescore_pass")
    assert not N.SCORE_FUNCTION.search("unscored_tail") and not N.SCORE_FUNCTION.search("retrieval_eval")
    assert N.CALIB_CALL.search("collect_hessians") and N.CALIB_CALL.search("gptq_quantize")
    assert not N.CALIB_CALL.search("scalib")


def test_vocabulary_building_blocks() -> None:
    assert first_word("eval*").search("evaluate_model") and not first_word("eval*").search("run_eval")
    assert last_word("loss").search("train_loss") and not last_word("loss").search("loss_scale")
    assert (any_word("a") | any_word("b")).search("x_b")
    assert (any_word("val") & any_word("load*")).search("loader_val")
    with pytest.raises(ValueError, match="lower-case words"):
        any_word("Loss")


def test_acronym_plurals_stay_one_word() -> None:
    assert words("IDs") == "_ids_" and words("NLLs") == "_nlls_" and words("IDsMap") == "_ids_map_"
    assert words("HTTPSConnection") == "_https_connection_"


@pytest.mark.parametrize(
    ("vocabulary", "real", "false"),
    [
        # PG201/PG202 cache tables: n-gram tables glue their words (``*gram*``, used on purpose)
        (
            "lookups.CACHE_WORDS",
            ["ngram_counts", "bigramhash", "trigram3_keys", "ctx_cnt", "hits", "ctx_tab", "BigramCache", "freq"],
            ["accounting", "discounted", "encounter", "stab", "summary_stab", "uncached"],
        ),
        (
            "lookups.BYTE_WORDS",
            ["base_bytes", "has_leading_space", "space_lut", "val_bpb", "lut_lspace"],
            ["namespace", "workspace", "linspace", "subspace"],
        ),
        (
            "lookups._HASH_NAMES",
            ["PRIME", "_FNV_PRIME", "HASH_MULT", "mults", "splitmix64", "mix", "seed", "golden_ratio", "bigramhash"],
            ["mixed", "mixture", "ngram_mixer", "multi_token", "multiple", "multiply"],
        ),
        (
            "lookups._SCORE_TARGET",
            ["nll_sum", "loss", "total_bits", "cumsum", "sums"],
            ["resume", "assume", "consumed"],
        ),
        (
            "byte_tables._BOUNDARY",
            ["is_boundary", "bnd", "bos_mask", "is_ctrl", "prev_tok", "unk_id", "not_bos", "is_control"],
            ["chunk", "chunk_len", "verbose", "trunk"],
        ),
        ("causality._NOT_GATE", ["byte_count", "seq_len", "lens", "loss_mask", "tok_count"], ["blend_w", "filename"]),
        (
            "causality.GATE_WORDS",
            ["word_start_boost", "agree2plus", "mix_w", "blend_w", "ngram_lambda", "expert_gate", "conf_thresh"],
            ["misconfigured", "raw_mix", "lambda_init"],
        ),
        (
            "causality._PREDICTION_WORDS",
            ["logits", "log_softmax", "probs", "log_probs2", "bias", "prior", "tilt_w", "probability"],
            ["probe", "problem", "priority"],
        ),
        ("update_order._SCORE_ACCUMULATOR", ["nll_sum", "total_bits", "loss", "nats"], ["JsonlLogger"]),
        (
            "update_order._OUTPUT_TABLES",
            ["tok_lp", "lps", "log_probs", "logprobs", "nll", "score_table"],
            ["mlp", "self.mlp", "probe", "problem"],
        ),
        ("doc_boundary._ID_WORDS", ["input_ids", "IDs", "tok", "tokens", "idx"], ["retokenize", "retokenization"]),
        ("doc_boundary.BOS_WORDS", ["bos_mask", "is_bos", "doc_start", "seg_ids", "reset_mask"], ["verbose"]),
        ("byte_accounting._TRAIN_ONLY", ["train_bpb", "pretrain_bpb"], ["constraint_bpb", "constrained"]),
        (
            "byte_accounting._TOKEN_NAME",
            ["n_tokens", "n", "tok_count", "numel", "seqlen", "total_toks"],
            ["blend", "filename", "silent", "challenge", "enumerate"],
        ),
    ],
)
def test_mechanism_vocabularies_match_whole_words(vocabulary: str, real: list[str], false: list[str]) -> None:
    """Each entry was checked against the identifiers of the labeled and wild corpus (issue #13):
    the real names still match, the false matches of the old substring regexes no longer do."""
    module, name = vocabulary.split(".")
    words_of = getattr(importlib.import_module(f"harness.check.mechanisms.{module}"), name)
    assert [n for n in real if not words_of.search(n)] == []
    assert [n for n in false if words_of.search(n)] == []
