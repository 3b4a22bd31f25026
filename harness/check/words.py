"""Name vocabularies matched over identifier words, never over raw substrings.

Why words: the checker follows names (it never runs the code), and an unanchored regex quietly
matches inside unrelated names — ``lp|ce`` finds ``slice_buf``, ``device`` and ``sequence``. An
identifier is split into words at ``_``, camelCase and acronym boundaries (``NLLSum`` → ``nll
sum``; digits stay with the letters before them, ``int8``; ``IDs`` → ``ids``); the entries'
syntax is in CONTRIBUTING.md. ``"*gram*"``, a word *containing* ``gram``, is for names real code
glues together (``bigramhash``), after comparing the matches over the corpus' identifiers.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+\d*(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")
_MAX_ANSWERS = 1 << 16
_ENTRY = re.compile(r"[a-z0-9_?*|()\[\]]+")


@lru_cache(maxsize=1 << 16)
def words(text: str) -> str:
    """The words of ``text``, lower-cased and joined with ``_``, with a ``_`` at both ends:
    ``"tokLosses"`` → ``"_tok_losses_"``. Any other character separates words, so a dotted
    name or a line of code splits the same way."""
    return "_" + "_".join(word.lower() for word in _WORD.findall(text)) + "_"


def _alternatives(entries: tuple[str, ...]) -> str:
    for entry in entries:
        if not _ENTRY.fullmatch(entry):
            raise ValueError(f"vocabulary entry {entry!r}: lower-case words, '_', '*' and regex groups only")
    return "_(?:" + "|".join(entry.replace("*", "[a-z0-9]*") for entry in entries) + ")_"


class Vocabulary:
    """A compiled vocabulary; ``search(name)`` says whether the name's words contain an entry."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re.compile(pattern)
        # The same few thousand names are asked about tens of thousands of times per audit;
        # a regex search each time was a tenth of the data-flow family's function table.
        self._answers: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        answer = self._answers.get(text)
        if answer is None:
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers.clear()
            answer = self._answers[text] = self._regex.search(words(text)) is not None
        return answer

    def __or__(self, other: Vocabulary) -> Vocabulary:
        return Vocabulary(f"(?:{self.pattern})|(?:{other.pattern})")

    def __and__(self, other: Vocabulary) -> Vocabulary:
        """Both vocabularies, in any order (``load_validation_tokens``)."""
        return Vocabulary(f"(?=.*(?:{self.pattern}))(?=.*(?:{other.pattern}))")


def any_word(*entries: str) -> Vocabulary:
    """Some word (or run of consecutive words) of the name is one of ``entries``."""
    return Vocabulary(_alternatives(entries))


def first_word(*entries: str) -> Vocabulary:
    """The name starts with one of ``entries`` (``eval_val``, ``val_tokens``)."""
    return Vocabulary("^" + _alternatives(entries))


def last_word(*entries: str) -> Vocabulary:
    """The name ends with one of ``entries``."""
    return Vocabulary(_alternatives(entries) + "$")
