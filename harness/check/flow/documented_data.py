"""Validation shards that the documented setup hands to training under a training name.

Why outside the code walk: an unmodified trainer can be pointed at the validation split from the
shell, which the data-flow walk cannot see. #44 (val-only training, ruled illegal) linked
``fineweb_val_000000.bin`` to ``fineweb_train_000000.bin`` in its README; #179 set
``TRAIN_FILES=fineweb_val_*.bin``. Only concrete commands in the README and ``*.sh`` files count:
a link/copy of a validation shard to a training-shard name, or a validation pattern assigned to a
training-data setting that the code reads.
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
            for command in _SPLIT.split(line):
                message = _judge_command(_words(command), code, f"{name}:{number}")
                if message is not None:
                    findings.append(finding("PG105", name, number, message))
    return findings


def _judge_command(words: list[str], code: str, where: str) -> str | None:
    while words and words[0] in _PREFIXES:
        words = words[1:]
    if words and posixpath.basename(words[0]) in _COPIERS:
        paths = [w for w in words[1:] if not w.startswith("-")]
        sources = [p for p in paths[:-1] if is_val_literal(posixpath.basename(p))]
        if not sources or not _TRAIN_SHARD.search(paths[-1]):
            return None
        verb = {"ln": "links", "mv": "renames"}.get(posixpath.basename(words[0]), "copies")
        return (
            f"the documented setup {verb} the validation shard `{sources[0]}` to the training-shard name "
            f"`{paths[-1]}` ({where}): the training loader reads validation data"
        )
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
            return (
                f"the documented configuration sets {setting}={value} ({where}), which the code reads as its "
                "training data: training batches are drawn from validation data"
            )
    return None


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()
