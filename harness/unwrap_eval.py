"""Evaluate the literal parts of a shim's expressions over ``ast`` nodes, without running them.

Why a hand-written evaluator: the checker must never ``exec``/``eval`` submission code (not
even ``ast.literal_eval``, which would not follow the names and aliases shims use anyway). We
understand exactly the expression shapes real shims are built from — string/bytes literals,
adjacent or ``+``-joined pieces, names bound to literals, import aliases, literal dicts for
lzma filter chains, and calls to the decoding steps of ``harness.unwrap_ops`` — and refuse
everything else with ``NotLiteral``.
"""

from __future__ import annotations

import ast
import posixpath
from dataclasses import dataclass
from typing import AnyStr

from harness.unwrap_ops import (
    KNOWN_MODULES,
    OPERATIONS,
    DecodeFailure,
    Operation,
    codecs_operation,
    decompress_lzma,
    module_constant,
)
from harness.unwrap_scope import Scope

# Evaluating one expression may not nest deeper than this: a 200-level nested expression or a
# 10,000-piece ``+`` chain must fail cleanly, not exhaust the interpreter's stack.
MAX_EVAL_DEPTH = 120
_DECOMPRESSOR_FACTORIES = {
    "lzma.LZMADecompressor": "lzma",
    "zlib.decompressobj": "zlib",
    "bz2.BZ2Decompressor": "bz2",
}
OPEN_FUNCTIONS = frozenset({"open", "io.open", "codecs.open", "builtins.open"})
_IDENTITY_PATH_FUNCTIONS = frozenset(
    {"os.path.abspath", "os.path.realpath", "os.path.normpath", "os.fspath", "str", "os.path.expanduser"}
)
_PATH_CONSTRUCTORS = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "os.path.join"})


class NotLiteral(Exception):
    """The expression depends on something that is not a literal we can evaluate."""


@dataclass(frozen=True)
class Value:
    """An evaluated expression and the decoding steps (labels, in order) that produced it."""

    data: object
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Decompressor:
    """``lzma.LZMADecompressor(...)`` etc. evaluated to its settings, awaiting ``.decompress``."""

    library: str
    args: tuple[object, ...]
    kwargs: tuple[tuple[str, object], ...]


class Evaluator:
    """Evaluates expressions of one module; ``cap`` bounds every decompressed output and
    ``file_path`` is what ``__file__`` means (the submission-relative path of the file)."""

    def __init__(self, scope: Scope, cap: int, file_path: str) -> None:
        self.scope = scope
        self.cap = cap
        self.file_path = file_path
        self._resolving: set[str] = set()

    # ---- names -------------------------------------------------------------------------

    def qualify(self, node: ast.expr, depth: int = 0) -> str | None:
        """The dotted library name an expression stands for (``L.decompress`` after
        ``import lzma as L`` → ``lzma.decompress``), or None when it is not one."""
        if depth > MAX_EVAL_DEPTH:
            return None
        if isinstance(node, ast.Name):
            return self._qualify_name(node, depth)
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value, depth + 1)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call) and node.args and not node.keywords:
            callee = self.qualify(node.func, depth + 1)
            if callee in ("__import__", "importlib.import_module"):
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    return first.value
        return None

    def _qualify_name(self, node: ast.Name, depth: int) -> str | None:
        name = node.id
        if name == "__file__":
            return None
        if name in self.scope.aliases:
            return self.scope.aliases[name]
        for module in reversed(self.scope.star_modules):
            qualified = f"{module}.{name}"
            if (
                qualified in OPERATIONS
                or qualified in _DECOMPRESSOR_FACTORIES
                or module_constant(qualified) is not None
            ):
                return qualified
        bound = self.scope.binding(node)
        if bound is not None and isinstance(bound, (ast.Name, ast.Attribute, ast.Call)) and name not in self._resolving:
            self._resolving.add(name)
            try:
                resolved = self.qualify(bound, depth + 1)
            finally:
                self._resolving.discard(name)
            if resolved is not None:
                return resolved
        if bound is None or name in KNOWN_MODULES:
            return name
        return None

    def operation_of(self, call: ast.Call) -> str | None:
        """The syntactic decoding step a call names (without evaluating its arguments):
        a key of OPERATIONS, ``codecs.decode`` or ``<library>.decompress`` on a decompressor."""
        qualified = self.qualify(call.func)
        if qualified in OPERATIONS or qualified == "codecs.decode":
            return qualified
        if isinstance(call.func, ast.Attribute) and call.func.attr == "decompress":
            receiver = call.func.value
            if isinstance(receiver, ast.Call) and self.qualify(receiver.func) in _DECOMPRESSOR_FACTORIES:
                return f"{_DECOMPRESSOR_FACTORIES[self.qualify(receiver.func) or '']}.decompress"
        return None

    # ---- values ------------------------------------------------------------------------

    def evaluate(self, node: ast.expr, depth: int = 0) -> Value:
        if depth > MAX_EVAL_DEPTH:
            raise NotLiteral("expression nested too deeply")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes, int, float, bool)) or node.value is None:
                return Value(node.value)
            raise NotLiteral("unsupported constant")
        if isinstance(node, ast.JoinedStr):
            parts = [p.value for p in node.values if isinstance(p, ast.Constant) and isinstance(p.value, str)]
            if len(parts) == len(node.values):
                return Value("".join(parts))
            raise NotLiteral("f-string with placeholders")
        if isinstance(node, ast.BinOp):
            return self._binary(node, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.evaluate(node.operand, depth + 1)  # ``wbits=-15``: raw deflate
            if type(operand.data) is int:
                return Value(-operand.data if isinstance(node.op, ast.USub) else operand.data, operand.steps)
            raise NotLiteral("sign of a non-integer")
        if isinstance(node, ast.Name):
            return self._name(node, depth)
        if isinstance(node, ast.Attribute):
            qualified = self.qualify(node)
            constant = module_constant(qualified) if qualified else None
            if constant is not None:
                return Value(constant)
            raise NotLiteral("attribute is not a known constant")
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.evaluate(item, depth + 1) for item in node.elts]
            data = [item.data for item in items]
            return Value(data if isinstance(node, ast.List) else tuple(data), _merge(items))
        if isinstance(node, ast.Dict):
            if any(key is None for key in node.keys):
                raise NotLiteral("dict unpacking")
            keys = [self.evaluate(key, depth + 1) for key in node.keys if key is not None]
            values = [self.evaluate(value, depth + 1) for value in node.values]
            try:
                return Value({k.data: v.data for k, v in zip(keys, values)}, _merge(keys + values))
            except TypeError:
                raise NotLiteral("unhashable dict key") from None
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise NotLiteral(type(node).__name__)

    def _concat(self, a: AnyStr, b: AnyStr) -> AnyStr:
        if len(a) + len(b) > self.cap:
            raise DecodeFailure("concatenated literal exceeds the size cap")
        return a + b

    def _binary(self, node: ast.BinOp, depth: int) -> Value:
        left = self.evaluate(node.left, depth + 1)
        right = self.evaluate(node.right, depth + 1)
        steps = left.steps + right.steps
        a, b = left.data, right.data
        if isinstance(node.op, ast.Add):
            if isinstance(a, str) and isinstance(b, str):
                return Value(self._concat(a, b), steps)
            if isinstance(a, bytes) and isinstance(b, bytes):
                return Value(self._concat(a, b), steps)
        if isinstance(node.op, ast.BitOr) and type(a) is int and type(b) is int:
            return Value(a | b, steps)
        if type(a) is int and type(b) is int:
            if isinstance(node.op, ast.Add):
                return Value(a + b, steps)
            if isinstance(node.op, ast.LShift) and 0 <= b <= 64:
                return Value(a << b, steps)
            if isinstance(node.op, ast.Mult) and abs(a) < 1 << 64 and abs(b) < 1 << 64:
                return Value(a * b, steps)
        raise NotLiteral("unsupported operator")

    def _name(self, node: ast.Name, depth: int) -> Value:
        qualified = self.qualify(node)
        constant = module_constant(qualified) if qualified else None
        if constant is not None:
            return Value(constant)
        if node.id == "__file__":
            return Value(self.file_path)
        bound = self.scope.binding(node)
        if not isinstance(bound, ast.expr) or node.id in self._resolving:  # unbound, or bound to UNKNOWN
            raise NotLiteral(f"name {node.id} is not bound to a literal")
        self._resolving.add(node.id)
        try:
            return self.evaluate(bound, depth + 1)
        finally:
            self._resolving.discard(node.id)

    def _arguments(self, call: ast.Call, depth: int) -> tuple[list[object], dict[str, object], tuple[str, ...]]:
        values = []
        for arg in call.args:
            if isinstance(arg, ast.Starred):
                raise NotLiteral("starred argument")
            values.append(self.evaluate(arg, depth + 1))
        keywords = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise NotLiteral("keyword unpacking")
            keywords[keyword.arg] = self.evaluate(keyword.value, depth + 1)
        steps = _merge(values + list(keywords.values()))
        return [v.data for v in values], {k: v.data for k, v in keywords.items()}, steps

    def _call(self, call: ast.Call, depth: int) -> Value:
        qualified = self.qualify(call.func)
        if qualified is not None and (qualified in OPERATIONS or qualified == "codecs.decode"):
            args, kwargs, steps = self._arguments(call, depth)
            operation = OPERATIONS.get(qualified) or codecs_operation(args, kwargs)
            if operation is None:
                return self._text_codec(args, kwargs, steps)
            return self._apply(operation, args, kwargs, steps)
        if qualified in _DECOMPRESSOR_FACTORIES:
            args, kwargs, steps = self._arguments(call, depth)
            return Value(_Decompressor(_DECOMPRESSOR_FACTORIES[qualified], tuple(args), tuple(kwargs.items())), steps)
        if qualified in ("bytes", "str", "bytearray") and len(call.args) >= 2:
            args, kwargs, steps = self._arguments(call, depth)
            return Value(_convert(qualified, args), steps)
        if isinstance(call.func, ast.Attribute) and qualified is None:
            receiver = self.evaluate(call.func.value, depth + 1)
            args, kwargs, steps = self._arguments(call, depth)
            return self._method(receiver, call.func.attr, args, kwargs, receiver.steps + steps)
        raise NotLiteral("call of an unknown function")

    def _apply(
        self, operation: Operation, args: list[object], kwargs: dict[str, object], steps: tuple[str, ...]
    ) -> Value:
        return Value(operation.apply(args, kwargs, self.cap), steps + (operation.label,))

    def _text_codec(self, args: list[object], kwargs: dict[str, object], steps: tuple[str, ...]) -> Value:
        encoding = args[1] if len(args) > 1 else kwargs.get("encoding", "utf-8")
        data = args[0] if args else None
        if isinstance(data, bytes) and isinstance(encoding, str):
            try:
                return Value(data.decode(encoding), steps)
            except (LookupError, UnicodeDecodeError) as exc:
                raise DecodeFailure(f"codecs.decode: {exc}") from None
        raise NotLiteral("codecs.decode of a non-literal")

    def _method(
        self, receiver: Value, method: str, args: list[object], kwargs: dict[str, object], steps: tuple[str, ...]
    ) -> Value:
        data = receiver.data
        if isinstance(data, _Decompressor) and method == "decompress":
            return self._decompressor_output(data, args, steps)
        if isinstance(data, (bytes, bytearray)) and method == "decode":
            encoding = args[0] if args else kwargs.get("encoding", "utf-8")
            errors = args[1] if len(args) > 1 else kwargs.get("errors", "strict")
            try:
                return Value(bytes(data).decode(str(encoding), str(errors)), steps)
            except (LookupError, UnicodeDecodeError) as exc:
                raise DecodeFailure(f"decode: {str(exc)[:200]}") from None
        if isinstance(data, str) and method == "encode":
            encoding = args[0] if args else kwargs.get("encoding", "utf-8")
            try:
                return Value(data.encode(str(encoding)), steps)
            except (LookupError, UnicodeEncodeError) as exc:
                raise DecodeFailure(f"encode: {str(exc)[:200]}") from None
        if isinstance(data, (str, bytes)) and method in ("strip", "lstrip", "rstrip", "replace", "join"):
            return Value(_string_method(data, method, args, self.cap), steps)
        raise NotLiteral(f"method {method} is not evaluated")

    def _decompressor_output(self, spec: _Decompressor, args: list[object], steps: tuple[str, ...]) -> Value:
        settings = dict(spec.kwargs)
        if spec.library == "lzma":
            fmt = spec.args[0] if spec.args else settings.get("format", 0)
            filters = spec.args[2] if len(spec.args) > 2 else settings.get("filters")
            data = args[0] if args else b""
            if not isinstance(data, bytes):
                raise NotLiteral("decompress of a non-bytes value")
            return Value(decompress_lzma(data, fmt, filters, self.cap), steps + ("lzma.decompress",))
        operation = OPERATIONS[f"{spec.library}.decompress"]
        call_args = list(args[:1]) + list(spec.args[:1])
        return self._apply(operation, call_args, {}, steps)

    # ---- paths (sibling-file shims) ----------------------------------------------------

    def path_of(self, node: ast.expr, depth: int = 0) -> str | None:
        """The submission-relative path an expression names (``__file__`` is this file's
        path), or None when it is not built from literals and ``__file__`` alone."""
        if depth > MAX_EVAL_DEPTH:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return self.file_path
            bound = self.scope.binding(node)
            if not isinstance(bound, ast.expr) or node.id in self._resolving:
                return None
            self._resolving.add(node.id)
            try:
                return self.path_of(bound, depth + 1)
            finally:
                self._resolving.discard(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
            left, right = self.path_of(node.left, depth + 1), self.path_of(node.right, depth + 1)
            if left is None or right is None:
                return None
            return posixpath.join(left, right) if isinstance(node.op, ast.Div) else left + right
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self.path_of(node.value, depth + 1)
            return posixpath.dirname(inner) if inner is not None else None
        if isinstance(node, ast.Call):
            return self._path_call(node, depth)
        return None

    def _path_call(self, call: ast.Call, depth: int) -> str | None:
        qualified = self.qualify(call.func)
        parts = [self.path_of(arg, depth + 1) for arg in call.args]
        if any(part is None for part in parts):
            return None
        texts: list[str] = [part for part in parts if part is not None]
        if qualified == "os.path.dirname" and len(texts) == 1:
            return posixpath.dirname(texts[0])
        if qualified in _IDENTITY_PATH_FUNCTIONS and len(texts) == 1:
            return texts[0]
        if qualified in _PATH_CONSTRUCTORS and texts:
            return posixpath.join(*texts)
        if isinstance(call.func, ast.Attribute):
            base = self.path_of(call.func.value, depth + 1)
            method = call.func.attr
            if base is None:
                return None
            if method == "replace" and len(texts) == 2:
                return base.replace(texts[0], texts[1])
            if method == "with_name" and len(texts) == 1:
                return posixpath.join(posixpath.dirname(base), texts[0])
            if method == "joinpath" and texts:
                return posixpath.join(base, *texts)
            if method in ("resolve", "absolute", "expanduser") and not texts:
                return base
        return None

    def read_target(self, node: ast.expr, depth: int = 0) -> str | None:
        """For ``open(P).read()``, ``P.read_text()`` (also through a name bound to them or a
        ``with open(P) as f`` alias): the path P, else None."""
        if depth > MAX_EVAL_DEPTH:
            return None
        if isinstance(node, ast.Name):
            bound = self.scope.binding(node)
            return self.read_target(bound, depth + 1) if isinstance(bound, ast.expr) and bound is not node else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("decode", "encode"):
                return self.read_target(node.func.value, depth + 1)
            receiver = node.func.value
            if node.func.attr == "read":
                opened = self.scope.binding(receiver) if isinstance(receiver, ast.Name) else receiver
                if isinstance(opened, ast.Call) and self.qualify(opened.func) in OPEN_FUNCTIONS and opened.args:
                    return self.path_of(opened.args[0], depth + 1)
            if node.func.attr in ("read_text", "read_bytes"):
                return self.path_of(receiver, depth + 1)
        return None


def _merge(values: list[Value]) -> tuple[str, ...]:
    steps: tuple[str, ...] = ()
    for value in values:
        steps += value.steps
    return steps


def _convert(kind: str, args: list[object]) -> object:
    data, encoding = args[0], args[1]
    if not isinstance(encoding, str):
        raise NotLiteral("non-literal encoding")
    try:
        if kind == "str" and isinstance(data, (bytes, bytearray)):
            return bytes(data).decode(encoding)
        if kind in ("bytes", "bytearray") and isinstance(data, str):
            return data.encode(encoding)
    except (LookupError, UnicodeError) as exc:
        raise DecodeFailure(f"{kind}(): {str(exc)[:200]}") from None
    raise NotLiteral("unsupported conversion")


def _string_method(data: str | bytes, method: str, args: list[object], cap: int) -> str | bytes:
    if method == "join":
        items = args[0] if args else None
        if isinstance(items, str) and isinstance(data, str):  # ''.join(("a" "b")): the characters
            if len(items) + len(data) * max(len(items) - 1, 0) > cap:
                raise DecodeFailure("joined literal exceeds the size cap")
            return data.join(items)
        if not isinstance(items, (list, tuple)) or not all(type(item) is type(data) for item in items):
            raise NotLiteral("join of non-literal items")
        if sum(len(item) for item in items) > cap:
            raise DecodeFailure("joined literal exceeds the size cap")
        return data.join(items)
    if not all(type(arg) is type(data) for arg in args):
        raise NotLiteral(f"{method} with non-literal arguments")
    if method == "replace":
        if len(args) != 2 or not args[0]:
            raise NotLiteral("unsupported replace")
        old, new = args
        if isinstance(data, str) and isinstance(old, str) and isinstance(new, str):
            return _capped_replace(data, old, new, cap)
        if isinstance(data, bytes) and isinstance(old, bytes) and isinstance(new, bytes):
            return _capped_replace(data, old, new, cap)
        raise NotLiteral("unsupported replace")
    return getattr(data, method)(*args[:1])


def _capped_replace(data: AnyStr, old: AnyStr, new: AnyStr, cap: int) -> AnyStr:
    growth = (len(new) - len(old)) * data.count(old)
    if len(data) + max(growth, 0) > cap:
        raise DecodeFailure("replaced literal exceeds the size cap")
    return data.replace(old, new)
