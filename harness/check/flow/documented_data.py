"""Validation shards that the documented setup hands to training under a training name.

Why outside the code walk: an unmodified trainer can be pointed at the validation split from
the shell. #44 (val-only training, ruled illegal by 0hq: "valid if you trained on the sample
after evaluating each token") linked ``fineweb_val_000000.bin`` to ``fineweb_train_000000.bin``
in its README; #179 set ``TRAIN_FILES=fineweb_val_*.bin``. The code then reads "training" shards
that are validation data, so the data-flow walk cannot see it; the README and ``*.sh`` files
can. Only concrete commands count: a link/copy whose source is a validation shard and whose
target is a training-shard name, or an assignment of a validation pattern to a setting whose
name says training data and which the code reads.
"""

from __future__ import annotations

import posixpath
import re
import shlex

from harness.catalog import finding
from harness.check.flow.names import is_val_literal
from harness.findings import Finding
from harness.submission import Submission, read_document_head

_READ_LIMIT = 512 * 1024
_COPIERS = frozenset({"ln", "cp", "mv", "rsync", "install"})
_PREFIXES = frozenset({"sudo", "$", "!", "time", "nohup", "then", "do", "else", "export"})
_TRAIN_SHARD = re.compile(r"(^|[/_\-.])train[_\-.][^/]*\.bin$", re.IGNORECASE)
_TRAIN_SETTING = re.compile(r"^(?:\w+_)?TRAIN_?(FILES?|PATTERN|DATA|SHARDS?|GLOB|PATH)$", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=(.+)$")
_SPLIT = re.compile(r"&&|\|\||;")


def documented_val_training(submission: Submission) -> list[Finding]:
    if submission.single_file:
        return []
    code = "\n".join(source.text for source in submission.sources)
    findings: list[Finding] = []
    for name in sorted(submission.files):
        base = posixpath.basename(name).lower()
        if not (base.endswith(".sh") or (base.startswith("readme") and base.endswith((".md", ".txt", ".rst")))):
            continue
        text = read_document_head(submission.root / name, _READ_LIMIT)
        for number, line in enumerate(text.splitlines(), 1):
            judged = (_judge_command(_words(command), code, name, number) for command in _SPLIT.split(line))
            findings.extend(found for found in judged if found is not None)
    return findings


def _judge_command(words: list[str], code: str, file: str, line: int) -> Finding | None:
    while words and words[0] in _PREFIXES:
        words = words[1:]
    if not words:
        return None
    if posixpath.basename(words[0]) in _COPIERS:
        paths = [w for w in words[1:] if not w.startswith("-")]
        if len(paths) < 2:
            return None
        target = paths[-1]
        sources = [p for p in paths[:-1] if is_val_literal(posixpath.basename(p))]
        if sources and _TRAIN_SHARD.search(target):
            verb = {"ln": "links", "mv": "renames"}.get(posixpath.basename(words[0]), "copies")
            return finding(
                "PG105",
                file,
                line,
                f"the documented setup {verb} the validation shard `{sources[0]}` to the "
                f"training-shard name `{target}` ({file}:{line}): the training loader reads "
                "validation data",
            )
        return None
    for word in words:
        match = _ASSIGNMENT.match(word)
        if match is None:
            break
        setting, value = match.groups()
        if (
            _TRAIN_SETTING.match(setting)
            and is_val_literal(value)
            and (f'"{setting}"' in code or f"'{setting}'" in code)
        ):
            return finding(
                "PG105",
                file,
                line,
                f"the documented configuration sets {setting}={value} ({file}:{line}), which "
                "the code reads as its training data: training batches are drawn from "
                "validation data",
            )
    return None


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()
