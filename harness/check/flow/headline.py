"""Which printed number is the headline: a re-evaluation logged only as a diagnostic is not.

Why: R-TTT-REPORT-FIRST-PASS (#991, #1004) makes the first-pass score-first number the one to
report; "re-evaluations after adaptation are diagnostics only". The headline is the last
``*_exact``/``final_*`` line (rules-research H.5), so a re-score is a diagnostic when every line
logging its result lacks those words while an earlier line of the same function has them.
"""

from __future__ import annotations

import re
from typing import TypeGuard

import libcst as cst

from harness.check.flow import names as N
from harness.check.parse import ParsedSource
from harness.check.tree.children import walk
from harness.check.tree.nodes import call_tail
from harness.findings import Step

_HEADLINE_WORD = re.compile(r"exact|final", re.IGNORECASE)
_STRINGS = (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString)


def logged_as_diagnostic(parsed: ParsedSource, call_site: Step) -> bool:
    """``call_site`` is the line of a re-scoring pass: assigned (``final_bpb = eval_val(…)``)
    and logged later, or logged where it runs (``print("DIAGNOSTIC …" % eval_val(…))``).
    The earlier headline may be printed by a function called before it (a TTT evaluation
    printing its own ``legal_ttt_exact`` line)."""
    defs = [node for node in walk(parsed.module) if isinstance(node, cst.FunctionDef)]
    for function in [None, *defs]:  # None: the module's top-level code
        own = _own_nodes(list(parsed.module.body if function is None else function.body.body))
        before, after = _log_texts(parsed, own, call_site.line)
        if after:
            before += _callee_log_texts(parsed, own, call_site.line, defs)
            return not any(_HEADLINE_WORD.search(t) for t in after) and any(_HEADLINE_WORD.search(t) for t in before)
    return False


def _own_nodes(body: list[cst.CSTNode]) -> list[cst.CSTNode]:
    """Nodes of one function body, nested definitions left out."""
    out: list[cst.CSTNode] = []
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        out.append(node)
        stack.extend(N.children(node))
    return out


def _is_log_call(node: cst.CSTNode) -> TypeGuard[cst.Call]:
    return isinstance(node, cst.Call) and N.is_log_call(call_tail(node))


def _log_text(node: cst.Call) -> str:
    """The literal text of a log call, formatted strings included (``"final … %.4f" % x``)."""
    texts = (N.string_value(n) for a in node.args for n in _own_nodes([a.value]) if isinstance(n, _STRINGS))
    return " ".join(text for text in texts if text)


def _log_texts(parsed: ParsedSource, own: list[cst.CSTNode], line: int) -> tuple[list[str], list[str]]:
    """Texts of log calls before ``line`` (any), and of those logging the result: after it,
    reading what ``line`` assigns, or on the line itself with the re-scoring call among their arguments."""
    assigned = {
        name
        for node in own
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call) and parsed.line_of(node) == line
        for target in node.targets
        for name in N.assigned_names(target.target)
    }
    before: list[str] = []
    after: list[str] = []
    for node in own:
        if not _is_log_call(node):
            continue
        at = parsed.line_of(node)
        if at < line:
            before.append(_log_text(node))
        elif at > line and any(N.root_part(r) in assigned for a in node.args for r in N.refs(a.value)):
            after.append(_log_text(node))
        elif at == line and any(
            isinstance(inner, cst.Call) and not _is_log_call(inner)
            for a in node.args
            for inner in _own_nodes([a.value])
        ):
            after.append(_log_text(node))
    return before, after


def _callee_log_texts(
    parsed: ParsedSource, own: list[cst.CSTNode], line: int, defs: list[cst.FunctionDef]
) -> list[str]:
    """Log texts of the module's functions called before ``line`` (one level)."""
    by_name = {f.name.value: f for f in defs}
    texts: list[str] = []
    for node in own:
        callee = by_name.get(call_tail(node)) if isinstance(node, cst.Call) else None
        if callee is not None and parsed.line_of(node) < line:
            texts.extend(_log_text(n) for n in _own_nodes(list(callee.body.body)) if _is_log_call(n))
    return texts
