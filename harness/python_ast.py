"""One ``ast.parse`` per text, shared by the shim unwrapper and the parse layer's pre-check.

Why a memo: the loader parses every source with ``ast`` to look for shim chains (and every
decoded payload to see whether it is Python), and the parse layer parses the same text again
to refuse pathological nesting before libcst sees it. Both hold the very same ``str`` object,
so the second parse is a lookup. Trees are large; only the last few are kept, and the engine
forgets them once a submission is analyzed.

The same holds for libcst: a decoded payload in 3.12 syntax, which ``ast`` on 3.11 refuses, is
parsed with libcst by the unwrapper (to know it is Python and to find nested shims), and the
parse layer would parse that very text again (over half a second for a 60 kB payload).
"""

from __future__ import annotations

import ast
import warnings

_PARSE_ERRORS = (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError)
_RECENT: list[tuple[str, ast.Module | BaseException]] = []
_RECENT_LIMIT = 4
_RECENT_MODULES: list[tuple[str, object]] = []
_RECENT_MODULES_LIMIT = 2


def parse_python(text: str) -> ast.Module:
    """``ast.parse(text)`` with SyntaxWarnings silenced; raises what ``ast.parse`` raises."""
    for known, outcome in _RECENT:
        if known is text:
            if isinstance(outcome, BaseException):
                raise outcome.with_traceback(None)
            return outcome
    try:
        with warnings.catch_warnings():  # SyntaxWarnings about submission code are noise here
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except _PARSE_ERRORS as error:
        _remember(text, error)
        raise
    _remember(text, tree)
    return tree


def _remember(text: str, outcome: ast.Module | BaseException) -> None:
    _RECENT.append((text, outcome))
    del _RECENT[:-_RECENT_LIMIT]


def remember_module(text: str, module: object) -> None:
    """Keep what the parse layer parsed from ``text`` (its libcst module, with what it needs
    to know about it) for ``recent_module``."""
    _RECENT_MODULES.append((text, module))
    del _RECENT_MODULES[:-_RECENT_MODULES_LIMIT]


def recent_module(text: str) -> object | None:
    """What ``remember_module`` kept for this very ``str`` object, if it was parsed lately."""
    for known, module in _RECENT_MODULES:
        if known is text:
            return module
    return None


def forget_trees() -> None:
    _RECENT.clear()
    _RECENT_MODULES.clear()
