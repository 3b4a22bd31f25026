"""What the logs of a folder without code say actually ran.

Why: some pull requests changed their script outside the records folder, so the folder holds a
README, ``submission.json`` and logs only and no code rule can run (issue 12). The logs are
still evidence a reviewer reads first: the hyperparameter dump names the switches that were
on (``ttt_enabled: True``, ``prequant_ttt_epochs: 6``), and the order of the lines shows
whether test-time training ran before the model was serialized — the pre-quantization TTT shape
ruled illegal when it trains on validation data (#1376, #1423). These sentences go into the
folder's "no code" warning; they are pointers for the reviewer, never a verdict on their own.
Reading is text only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

from harness.submission import Setting

MAX_LOGS = 40
MAX_SETTINGS_SHOWN = 6
_LOG_SUFFIXES = (".log", ".txt")
_NOT_LOGS = frozenset({"requirements.txt", "readme.txt", "license.txt"})
# ``ttt:start lr=… epochs=6``, ``ttt_adamw:epoch 1/6 loss:…``, ``  ttt[1/474] bpb=…``,
# ``ttt: chunk=0/348`` (after an optional timestamp). A dump's ``ttt_epochs: 3`` is a setting and
# an echoed source line ``ttt_lr = float(…)`` is code: neither is activity.
_TIMESTAMP = r"(?:\[?\d{9,13}(?:\.\d+)?\]?\s*[:|-]?\s*)?"
_TTT_LINE = re.compile(rf"^\s*{_TIMESTAMP}\[?(?:\w*_)?ttt\w*\]?(?:[:\[\s]|$)", re.I)
_ACTIVITY_WORD = re.compile(r"epoch|chunk|step|start|loss|bpb|elapsed|done|\d+/\d+", re.I)
_PAIR_TOKEN = re.compile(r"^\w+[:=]([^\s:=]+)$")
_SCALAR_PAIR = re.compile(r"^\s*\w+\s*[:=]\s*[\w.+-]+\s*$")
_SERIALIZED = re.compile(rf"^\s*{_TIMESTAMP}serialized model\b", re.I)
_RELEVANT_SETTING = re.compile(r"TTT|QUANT|GPTQ|CALIB|EVAL|VAL_|SLOT|NGRAM|EPOCH|MAX_WALLCLOCK|ITERATIONS")


def log_evidence(files: list[str], read: Callable[[str], str | None], settings: dict[str, Setting]) -> list[str]:
    """Sentences for the "no code" warning: the logged switches that matter for legality, and
    each log where test-time training ran before serialization."""
    sentences: list[str] = []
    logged = sorted(
        (s for s in settings.values() if s.source_kind == "log" and _RELEVANT_SETTING.search(s.name)),
        key=lambda s: (_switch_order(s.name), s.file, s.line),
    )
    if logged:
        shown = ", ".join(f"{s.name}={s.value} ({s.file}:{s.line})" for s in logged[:MAX_SETTINGS_SHOWN])
        more = f" and {len(logged) - MAX_SETTINGS_SHOWN} more" if len(logged) > MAX_SETTINGS_SHOWN else ""
        sentences.append(f"the logs' hyperparameters show {shown}{more}")
    early = [found for found in (_ttt_before_serialization(name, read) for name in _logs(files)) if found]
    if early:
        first = early[0]
        others = f" (and {len(early) - 1} more log(s))" if len(early) > 1 else ""
        sentences.append(
            f"{first[0]}:{first[1]} shows test-time training before the model is serialized (line {first[2]})"
            f"{others}: the submitted weights were adapted before quantization — check what data that TTT "
            "trained on (pre-quantization TTT on validation data is illegal, PG102)"
        )
    return sentences


def _switch_order(name: str) -> int:
    """Switches first (``TTT_ENABLED``), then epoch counts, then the rest."""
    if re.search(r"ENABLED?$|^USE_|_ON$", name):
        return 0
    return 1 if "EPOCH" in name else 2


def _logs(files: list[str]) -> list[str]:
    logs = []
    for name in files:
        path = PurePosixPath(name)
        if path.suffix.lower() in _LOG_SUFFIXES and path.name.lower() not in _NOT_LOGS:
            logs.append(name)
    return logs[:MAX_LOGS]


def _ttt_before_serialization(name: str, read: Callable[[str], str | None]) -> tuple[str, int, int] | None:
    """(log, first TTT activity line, first serialization line) when TTT activity comes first."""
    text = read(name)
    if not text:
        return None
    first_ttt = 0
    for number, line in enumerate(text.splitlines(), 1):
        if _SERIALIZED.match(line):
            return (name, first_ttt, number) if first_ttt else None
        if not first_ttt and _is_ttt_activity(line):
            first_ttt = number
    return None


def _is_ttt_activity(line: str) -> bool:
    """A ``ttt…`` line that reports progress. A line made only of ``key:value`` pairs is a
    hyperparameter dump (``ttt_lora_rank:8 ttt_chunk_size:256``) unless a value is progress
    (``ttt:start lr=… epochs=6``): only values are searched then, never the key names."""
    if _TTT_LINE.match(line) is None or _SCALAR_PAIR.match(line) or " = " in line or "(" in line:
        return False
    pairs = [_PAIR_TOKEN.match(token) for token in line.split()]
    if pairs and all(pairs):
        return any(_ACTIVITY_WORD.search(pair.group(1)) for pair in pairs if pair)
    return _ACTIVITY_WORD.search(line) is not None
