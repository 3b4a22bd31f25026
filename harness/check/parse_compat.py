"""Valid Python that libcst's grammar refuses, rewritten so that libcst accepts it.

Why: golf-check must never call ordinary Python an ``error``. libcst's parser lacks one
form that CPython accepts: an annotated assignment whose target is parenthesized,
``(x): int = 0`` (CPython's own grammar and typing tests use it; found by
``bench/stdlib_run.py``). The rewrite keeps every line and every column after the target:
the parentheses become spaces behind the target (``x   : int = 0``), which means the same to
every rule (the statement annotates and assigns ``x``). Only files that libcst refused and
CPython's ``ast`` accepts are rewritten.
"""

from __future__ import annotations

import ast
import re

# Lines as Python counts them (\n, \r\n or a lone \r; not the form feeds and Unicode line
# separators that ``str.splitlines`` also splits on), each with its end.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def libcst_compatible(text: str, tree: ast.Module) -> str | None:
    """``text`` with the forms libcst refuses rewritten, or None when there is nothing to
    rewrite (the libcst failure is then reported as it is)."""
    lines = _LINE.findall(text)
    changed = False
    for node in ast.walk(tree):
        if type(node) is ast.AnnAssign and not node.simple:
            changed |= _unparenthesize_target(lines, node)
    return "".join(lines) if changed else None


def _unparenthesize_target(lines: list[str], node: ast.AnnAssign) -> bool:
    """Move the parentheses around a one-line annotated target behind it, as spaces.

    ``ast`` columns are UTF-8 byte offsets, so the line is edited as bytes."""
    target = node.target
    if not (node.lineno == target.lineno == target.end_lineno) or node.lineno > len(lines):
        return False
    line = lines[node.lineno - 1].encode("utf-8")
    start, target_start, target_end = node.col_offset, target.col_offset, target.end_col_offset or 0
    if target_start <= start:
        return False  # not parenthesized (``a.b: int``)
    colon = line.find(b":", target_end)
    prefix, suffix = line[start:target_start], line[target_end:colon] if colon >= 0 else b""
    if colon < 0 or prefix.strip(b"( \t") or suffix.strip(b") \t") or prefix.count(b"(") != suffix.count(b")"):
        return False
    padding = b" " * (len(prefix) + len(suffix))
    rewritten = line[:start] + line[target_start:target_end] + padding + line[colon:]
    lines[node.lineno - 1] = rewritten.decode("utf-8")
    return True
