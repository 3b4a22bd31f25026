"""Which findings contradict which ``compliance`` claims in submission.json (PG406).

Why a table: submitters invented their own flag names (``score_first_ttt``, ``legal_ttt``,
``no_pre_quant_ttt``, ``three_seeds``…). Each name is normalised (lower case, runs of
non-alphanumerics to ``_``) and mapped to the rules whose error findings prove it false.
A flag we do not know is never judged.
"""

from __future__ import annotations

import re
from typing import Any

CLAIM_CONTRADICTED_BY: dict[str, tuple[str, ...]] = {
    # Test-time training on validation data.
    "score_first_ttt": ("PG101", "PG103"),
    "ttt_score_first": ("PG101", "PG103"),
    "legal_ttt": ("PG101", "PG103"),
    "score_before_update": ("PG101", "PG103"),
    "c3_score_before_update": ("PG101", "PG103"),
    "single_pass": ("PG103",),
    "c4_single_pass": ("PG103",),
    "no_rescoring": ("PG103",),
    "no_pre_quant_ttt": ("PG102",),
    "no_prequant_ttt": ("PG102",),
    "no_pre_eval_ttt": ("PG101",),
    "no_val_in_training": ("PG101", "PG102", "PG105"),
    "no_val_training": ("PG101", "PG102", "PG105"),
    "no_validation_training": ("PG101", "PG102", "PG105"),
    "no_val_data_in_training": ("PG101", "PG102", "PG105"),
    "no_val_calibration": ("PG106",),
    "no_val_in_calibration": ("PG106",),
    "calibration_on_train": ("PG106",),
    # Scoring validity (#1017 conditions).
    "causal": ("PG201",),
    "c1_causal": ("PG201",),
    "normalized": ("PG202",),
    "c2_normalized": ("PG202",),
    "full_vocab_normalized": ("PG202",),
    "doc_isolation": ("PG203",),
    "no_cross_document": ("PG203",),
    "exact_bpb": ("PG204",),
    "canonical_bpb": ("PG204",),
    # Runtime I/O.
    "no_network": ("PG301",),
    "self_contained": ("PG301",),
    "no_train_data_at_eval": ("PG302",),
    "no_training_data_at_eval": ("PG302",),
    "no_train_data_in_eval": ("PG302",),
    # Package.
    "under_16mb": ("PG303",),
    "artifact_under_16mb": ("PG303",),
    "size_ok": ("PG303",),
    "under_10min": ("PG304",),
    "train_under_600s": ("PG304",),
    "eval_under_600s": ("PG304",),
    "three_seeds": ("PG404",),
    "multi_seed": ("PG404",),
}

_TRUE_TEXT = frozenset({"true", "yes", "pass", "passed", "ok", "y"})


def normalise_flag(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def is_claimed(value: Any) -> bool:
    """A claim is made by ``true`` or a yes-like string; anything else claims nothing."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE_TEXT


def contradicted_rules(flag: str) -> tuple[str, ...]:
    return CLAIM_CONTRADICTED_BY.get(normalise_flag(flag), ())
