"""Valid Python that libcst's parser refuses, rewritten so that libcst accepts it.

Why: golf-check must never call ordinary Python an ``error``. Each form libcst refuses and
CPython accepts is rewritten keeping every line where it was (each function says which), and
only in files that libcst refused and CPython's ``ast`` accepts.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize

# Lines as Python counts them (\n, \r\n or a lone \r; not the form feeds and Unicode line
# separators that ``str.splitlines`` also splits on), each with its end.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
# Adjacent literals per group: well below the ~3,000 at which libcst's parser gives up.
LITERAL_GROUP = 1000
_GLUED = (tokenize.OP, tokenize.STRING, tokenize.NUMBER)  # not indentation or line ends


def libcst_compatible(text: str, tree: ast.Module) -> str | None:
    """``text`` with the forms libcst refuses rewritten, or None when there is nothing to
    rewrite (the libcst failure is then reported as it is)."""
    lines = _LINE.findall(text)
    changed = False
    for node in ast.walk(tree):
        if type(node) is ast.AnnAssign and not node.simple:
            changed |= _unparenthesize_target(lines, node)
    changed |= bool(_space_glued_keywords(lines, tree))
    changed |= _group_long_literal_chains(lines)
    changed |= _drop_lone_continuations(lines, tree)
    return "".join(lines) if changed else None


def _keep_if_same(lines: list[str], before: list[str], tree: ast.Module | None) -> bool:
    """Whether CPython reads the edited ``lines`` as ``tree``; if not, ``lines`` is restored.
    No tree (3.12 syntax that ``ast`` on 3.11 refuses) keeps the edit unchecked."""
    if tree is None:
        return True
    try:
        same = ast.dump(ast.parse("".join(lines))) == ast.dump(tree)
    except (SyntaxError, ValueError):
        same = False
    if not same:
        lines[:] = before
    return same


def _insert(lines: list[str], insertions: list[tuple[int, int, str]]) -> None:
    for line, column, inserted in sorted(insertions, reverse=True):  # right to left on each line
        lines[line] = lines[line][:column] + inserted + lines[line][column:]


def _drop_lone_continuations(lines: list[str], tree: ast.Module) -> bool:
    """A line holding only a backslash between statements (a decoded payload of wild #1887 has
    dozens) joins nothing CPython cares about, but libcst refuses one before a dedented
    statement ("expected INDENT"). The backslash becomes a space, where CPython reads the
    same program either way."""
    lone = [index for index, line in enumerate(lines) if line.strip() == "\\"]
    if not lone:
        return False
    before = list(lines)
    for index in lone:
        lines[index] = lines[index].replace("\\", " ", 1)
    return _keep_if_same(lines, before, tree)


def space_glued_keywords(text: str, tree: ast.Module | None) -> tuple[str, list[int]] | None:
    """``text`` spaced as ``_space_glued_keywords`` does and the offsets in ``text`` where each
    space went, or None when there is none. ``tree`` None (3.12 syntax, a decoded payload) keeps
    the spaces unchecked: a space between two tokens changes no program."""
    lines = _LINE.findall(text)
    starts = [match.start() for match in _LINE.finditer(text)]
    inserted = _space_glued_keywords(lines, tree)
    if not inserted:
        return None
    return "".join(lines), sorted(starts[line] + column for line, column, _space in inserted)


def _space_glued_keywords(lines: list[str], tree: ast.Module | None) -> list[tuple[int, int, str]]:
    """Minified code glues keywords to brackets, quotes and numbers: ``a or(b if c else d)``
    (wild #1858), ``sum((a)-(b)for x in y)`` (a payload of #1850). Python reads them as
    written; libcst's node validation refuses them ("at least one space around boolean
    operator", "before 'for' keyword"). A space goes between each keyword and a bracket, quote
    or number it touches, where CPython reads the same program either way; returns the spaces."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO("".join(lines)).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    insertions = [
        (token.start[0] - 1, token.start[1], " ")
        for previous, token in zip(tokens, tokens[1:])
        if previous.end == token.start
        and ((_is_keyword(previous) and token.type in _GLUED) or (_is_keyword(token) and previous.type in _GLUED))
    ]
    before = list(lines)
    _insert(lines, insertions)
    return insertions if insertions and _keep_if_same(lines, before, tree) else []


def _is_keyword(token: tokenize.TokenInfo) -> bool:
    return token.type == tokenize.NAME and keyword.iskeyword(token.string)


def _group_long_literal_chains(lines: list[str]) -> bool:
    """More than about 3,000 adjacent string literals in one expression (an inline data blob of
    11,000 lines, wild #2012) are too many for libcst: every chain of more than ``LITERAL_GROUP``
    is cut into parenthesized groups joined by ``+``, ``(("a" "b")+("c" "d"))``, the same
    string whatever follows it; only the lines where a group ends grow by a few characters."""
    chains: list[list[tokenize.TokenInfo]] = [[]]  # STRING tokens with only line breaks and comments between
    try:
        for token in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if token.type == tokenize.STRING:
                chains[-1].append(token)
            elif token.type not in (tokenize.NL, tokenize.COMMENT) and chains[-1]:
                chains.append([])
    except (tokenize.TokenError, SyntaxError):
        chains.pop()  # the chain the error cut short
    insertions: list[tuple[int, int, str]] = []  # (line index, column, text)
    for chain in (chain for chain in chains if len(chain) > LITERAL_GROUP):
        first = chain[0].start
        insertions.append((first[0] - 1, first[1], "(("))
        for index in range(LITERAL_GROUP - 1, len(chain) - 1, LITERAL_GROUP):
            end = chain[index].end
            insertions.append((end[0] - 1, end[1], ")+("))
        last = chain[-1].end
        insertions.append((last[0] - 1, last[1], "))"))
    _insert(lines, insertions)
    return bool(insertions)


def _unparenthesize_target(lines: list[str], node: ast.AnnAssign) -> bool:
    """An annotated assignment whose target is parenthesized, ``(x): int = 0`` (CPython's own
    grammar and typing tests use it; found by ``bench/stdlib_run.py``): the parentheses around
    a one-line target become spaces behind it, ``x   : int = 0``, every later column kept.
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
