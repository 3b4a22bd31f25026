"""Which findings contradict which ``compliance`` claims in submission.json (PG406).

Why a table: submitters invented their own flag names (``score_first_ttt``, ``legal_ttt``,
``no_pre_quant_ttt``, ``three_seeds``…). Each name is normalised (lower case, runs of
non-alphanumerics to ``_``) and mapped to the rules whose error findings prove it false.
A flag we do not know is never judged.
"""

from __future__ import annotations

import re
from typing import Any

_FLAGS_BY_RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # Test-time training on validation data.
    (("PG101", "PG103"), ("score_first_ttt", "ttt_score_first", "legal_ttt")),
    (("PG101", "PG103"), ("score_before_update", "c3_score_before_update")),
    (("PG103",), ("single_pass", "c4_single_pass", "no_rescoring")),
    (("PG102",), ("no_pre_quant_ttt", "no_prequant_ttt")),
    (("PG101",), ("no_pre_eval_ttt",)),
    (("PG101", "PG102", "PG105"), ("no_val_in_training", "no_val_training", "no_val_data_in_training")),
    (("PG101", "PG102", "PG105"), ("no_validation_training",)),
    (("PG106",), ("no_val_calibration", "no_val_in_calibration", "calibration_on_train")),
    # Scoring validity (#1017 conditions).
    (("PG201",), ("causal", "c1_causal")),
    (("PG202",), ("normalized", "c2_normalized", "full_vocab_normalized")),
    (("PG203",), ("doc_isolation", "no_cross_document")),
    (("PG204",), ("exact_bpb", "canonical_bpb")),
    # Runtime I/O.
    (("PG301",), ("no_network", "self_contained")),
    (("PG302",), ("no_train_data_at_eval", "no_training_data_at_eval", "no_train_data_in_eval")),
    # Package.
    (("PG303",), ("under_16mb", "artifact_under_16mb", "size_ok")),
    (("PG304",), ("under_10min", "train_under_600s", "eval_under_600s")),
    (("PG404",), ("three_seeds", "multi_seed")),
]
CLAIM_CONTRADICTED_BY = {flag: rules for rules, flags in _FLAGS_BY_RULES for flag in flags}

_TRUE_TEXT = frozenset({"true", "yes", "pass", "passed", "ok", "y"})


def is_claimed(value: Any) -> bool:
    """A claim is made by ``true`` or a yes-like string; anything else claims nothing."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE_TEXT


def contradicted_rules(flag: str) -> tuple[str, ...]:
    return CLAIM_CONTRADICTED_BY.get(re.sub(r"[^a-z0-9]+", "_", flag.lower()).strip("_"), ())
