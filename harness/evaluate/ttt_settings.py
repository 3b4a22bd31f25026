"""Default LoRA test-time-training settings, shared by ``golf-eval``'s parser and the adapters.

Why a module of its own: the command line builds its parser (and answers ``--help``) without
importing torch, while ``adapters/base.py`` needs torch; both read the defaults from here so the
help text, the config and the adapter can never disagree.
"""

from __future__ import annotations

LORA_DEFAULT_RANK = 8
LORA_DEFAULT_LR = 0.01
LORA_DEFAULT_TARGETS = "qv"  # "qv": attention query/value projections; "all": every linear but the head
LORA_TARGET_CHOICES = ("qv", "all")
