"""The one value for "not decidable statically", shared by every evaluator in the harness.

Why one: the switch evaluator (``harness/check/switches/``) and the shim unwrapper's scopes
(``harness/unwrap_scope.py``) both meet names bound to something they cannot know — a
parameter, a loop variable, an env read that no documented run sets. Every caller reads it the
same cautious way: an unknown never decides that code is off, nor that a payload is a literal.
"""

from __future__ import annotations

from typing import Final


class Unknown:
    """The type of ``UNKNOWN`` (one instance), for annotations and narrowing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()
