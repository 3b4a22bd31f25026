"""Cheaper construction of libcst nodes while the native parser builds a tree.

Why: the parser creates every node (about 115k for a 3,800-line file) by calling its class,
and libcst's frozen-dataclass ``__init__`` sets each field through ``object.__setattr__``
and then runs ``__post_init__`` validation meant for hand-built trees. During a parse the
fields arrive complete and valid by construction, so each class gets, for the duration of
the parse only, an ``__init__`` with the same signature that stores the fields through the
slot descriptors directly. A test checks that the trees are equal either way.

The replacement functions are generated source, built once per process from the classes'
own dataclass fields (our text, compiled with ``exec``; no submission code is involved).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import libcst as cst

_Init = Callable[..., None]


def _slotted_node_classes() -> list[type]:
    """Concrete node classes as the parser sees them. libcst's ``add_slots`` rebuilds each
    dataclass with ``__slots__``; the slot-less originals remain as dead subclasses and are
    skipped (their fields are not descriptors)."""
    found: list[type] = []
    seen: set[type] = set()
    stack: list[type] = [cst.CSTNode]
    while stack:
        for subclass in stack.pop().__subclasses__():
            if subclass in seen:
                continue
            seen.add(subclass)
            stack.append(subclass)
            if "__init__" in subclass.__dict__ and "__slots__" in subclass.__dict__:
                found.append(subclass)
    return found


def _setter(cls: type, name: str) -> Callable[[object, object], None] | None:
    for owner in cls.__mro__:
        descriptor = owner.__dict__.get(name)
        if descriptor is not None:
            setter = getattr(descriptor, "__set__", None)
            return setter if type(descriptor).__name__ == "member_descriptor" else None
    return None


def _init_source(cls: type, key: int, namespace: dict[str, object]) -> str | None:
    """Source of one class's ``__init__``, or None when its fields are not plain slots with
    positional-or-keyword parameters (that class keeps libcst's own)."""
    fields = dataclasses.fields(cls)
    parameters: list[str] = []
    body: list[str] = []
    for position, field in enumerate(fields):
        setter = _setter(cls, field.name)
        if not field.init or field.kw_only or setter is None:
            return None
        setter_name = f"_set_{key}_{position}"
        namespace[setter_name] = setter
        if field.default is not dataclasses.MISSING:
            default_name = f"_default_{key}_{position}"
            namespace[default_name] = field.default
            parameters.append(f"{field.name}={default_name}")
            body.append(f"{setter_name}(self, {field.name})")
        elif field.default_factory is not dataclasses.MISSING:
            factory_name = f"_factory_{key}_{position}"
            namespace[factory_name] = field.default_factory
            parameters.append(f"{field.name}=_MISSING")
            body.append(f"{setter_name}(self, {factory_name}() if {field.name} is _MISSING else {field.name})")
        else:
            if any("=" in parameter for parameter in parameters):
                return None  # a required field after a defaulted one: not a valid signature
            parameters.append(field.name)
            body.append(f"{setter_name}(self, {field.name})")
    statements = "\n".join(f"    {line}" for line in body) or "    pass"
    return f"def _init_{key}(self, {', '.join(parameters)}):\n{statements}\n"


def _build_fast_inits() -> list[tuple[type, _Init, _Init]]:
    """(class, libcst's __init__, the fast one) for every class that can have one."""
    namespace: dict[str, object] = {"_MISSING": dataclasses.MISSING}
    sources: list[str] = []
    classes: list[tuple[int, type]] = []
    for key, cls in enumerate(_slotted_node_classes()):
        source = _init_source(cls, key, namespace)
        if source is not None:
            sources.append(source)
            classes.append((key, cls))
    exec(compile("\n".join(sources), "<harness.check.node_init>", "exec"), namespace)  # noqa: S102 — our own text
    return [(cls, cls.__dict__["__init__"], namespace[f"_init_{key}"]) for key, cls in classes]  # type: ignore[misc]


_FAST_INITS = _build_fast_inits()


@contextmanager
def fast_node_construction() -> Iterator[None]:
    """Install the fast constructors (and no validation for the classes that keep libcst's
    own); everything is restored on exit, whatever happens inside."""
    base = cst.CSTNode
    original_post_init = base.__dict__.get("__post_init__")
    try:
        if original_post_init is not None:
            base.__post_init__ = _skip_validation  # type: ignore[method-assign]
        for cls, _original, fast in _FAST_INITS:
            cls.__init__ = fast  # type: ignore[misc]
        yield
    finally:
        for cls, original, _fast in _FAST_INITS:
            cls.__init__ = original  # type: ignore[misc]
        if original_post_init is not None:
            base.__post_init__ = original_post_init  # type: ignore[method-assign]


def _skip_validation(_node: cst.CSTNode) -> None:
    return None
