"""Type tests against libcst node classes at the cost of a plain class's.

Why: every libcst node class is an ``abc.ABC``, so ``isinstance(node, cst.Call)`` runs
``ABCMeta.__instancecheck__``, a Python-level function, before the C check. The rule families
make close to a million such tests on a large submission; the Python frame around each one
was a tenth of their run time. libcst registers no virtual subclasses and defines no
``__subclasshook__``, so the ABC machinery can only ever answer what the class hierarchy
answers: the node classes get a metaclass whose type tests are ``type``'s own. Abstract
methods, ``_abc_impl`` and everything else about the classes stay as they were. A test checks
that every class pair answers as before.
"""

from __future__ import annotations

import abc

import libcst as cst

try:
    from _abc import _get_dump as _abc_state  # CPython's C implementation of abc
except ImportError:  # pragma: no cover - another implementation: keep ABCMeta's tests
    _abc_state = None


class PlainTypeTestMeta(abc.ABCMeta):
    """``ABCMeta`` with ``type``'s C-level ``isinstance``/``issubclass``."""

    __instancecheck__ = type.__instancecheck__  # type: ignore[assignment]
    __subclasscheck__ = type.__subclasscheck__  # type: ignore[assignment]


def _node_classes() -> list[type]:
    found: list[type] = [cst.CSTNode]
    seen: set[type] = {cst.CSTNode}
    position = 0
    while position < len(found):
        for subclass in found[position].__subclasses__():
            if subclass not in seen:
                seen.add(subclass)
                found.append(subclass)
        position += 1
    return found


def use_plain_type_tests() -> None:
    """Idempotent. A class with another metaclass than ``ABCMeta``, or with registered
    virtual subclasses, keeps its ABC type tests."""
    if _abc_state is None:
        return
    for cls in _node_classes():
        if type(cls) is abc.ABCMeta and not _abc_state(cls)[0]:
            cls.__class__ = PlainTypeTestMeta
