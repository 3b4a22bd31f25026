"""The submission's own lines around each step of a finding, highlighted, for report.html.

Why a window and not the single line: a source→sink step ("val_tokens = load_val(…)") is judged
by its neighbours — the loop it sits in, the call right after it — so each step shows a few
lines either side with the step's line marked. pygments does the highlighting into HTML that
is inlined in the page (its CSS is too), so the page needs nothing from the network. The text
is the analyzed source: for a decoded shim, the decoded program, which is what the path
refers to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTEXT_LINES = 3
_MAX_LINE = 240  # a minified one-liner is clipped, not printed whole


@dataclass(frozen=True)
class Highlighter:
    """pygments' Python lexer and an HTML formatter, made once per page."""

    pygments: Any
    lexer_for: Any  # file name -> lexer (Python for .py, plain text for what pygments does not know)
    formatter_class: Any

    @classmethod
    def create(cls) -> Highlighter:
        import pygments
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer, TextLexer, get_lexer_for_filename
        from pygments.util import ClassNotFound

        def lexer_for(file_name: str) -> Any:
            # stripnl=False: pygments drops leading blank lines by default, which would shift
            # every line number of a window that starts on a blank line
            if file_name.endswith(".py") or "[decoded#" in file_name:
                return PythonLexer(stripnl=False)
            try:
                return get_lexer_for_filename(file_name, stripnl=False)
            except ClassNotFound:
                return TextLexer(stripnl=False)

        return cls(pygments, lexer_for, HtmlFormatter)

    def css(self) -> str:
        return str(self.formatter_class(cssclass="code").get_style_defs(".code"))

    def block(self, code: str, file_name: str, first_line: int = 1, marked: int | None = None) -> str:
        """``code`` (of a file named ``file_name``) as highlighted HTML with line numbers from
        ``first_line``; ``marked`` (an absolute line number) is shaded."""
        formatter = self.formatter_class(
            cssclass="code",
            linenos="inline",
            linenostart=first_line,
            hl_lines=[marked - first_line + 1] if marked is not None else [],
            wrapcode=True,
        )
        return str(self.pygments.highlight(code, self.lexer_for(file_name), formatter))

    def excerpt(self, source: str | None, file_name: str, line: int) -> str | None:
        """The lines around ``line`` of ``source``, or None when the line is not in it."""
        if source is None or line < 1:
            return None
        lines = source.splitlines()
        if line > len(lines):
            return None
        first = max(1, line - CONTEXT_LINES)
        last = min(len(lines), line + CONTEXT_LINES)
        window = [_clip(text) for text in lines[first - 1 : last]]
        return self.block("\n".join(window) + "\n", file_name, first, line)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 1] + "…"
