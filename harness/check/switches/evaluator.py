"""The one evaluator of constants and environment switches that every rule family reads.

Why: legality is usually switched by env variables read with a default (``TTT_ENABLED="0"``)
that the README run command, a ``*.sh`` script or the logged hyperparameters turn on
(``harness/settings.py``). Whether flagged code runs must be decided by the same rules whichever
family asks; with a folder each, every new form (a logged ``True``, a one-line env helper,
``getattr`` on the config) had to be taught twice. Anything the folder does not know is
``UNKNOWN``, which every caller reads as "may run", so an unknown never hides a finding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libcst as cst

from harness.check.tree.index import ModuleIndex
from harness.check.tree.nodes import call_name, call_tail, dotted_name, number_value, string_value
from harness.submission import Setting
from harness.unknown import UNKNOWN  # "may run" to every caller

MAX_DEPTH = 12
ENV_CALLS = frozenset({"os.environ.get", "environ.get", "os.getenv", "getenv"})
_TRUTHY = frozenset({"1", "true", "yes", "on", "y", "t"})
_CONSTANTS = {"True": True, "False": False, "None": None, "__name__": "__main__"}
T = TypeVar("T")
Helper = tuple[cst.Parameters, cst.BaseExpression]
# parameter → argument, one level per helper or lifted call being evaluated (innermost first)
Scope = tuple[tuple[tuple[str, cst.BaseExpression], ...], ...]
# an env switch the evaluation read: (name, value, the documented setting or None for the code default)
Used = tuple[str, str, Setting | None]


@dataclass
class Evaluation:
    """The value of an expression plus the env switches that decided it."""

    value: object
    used: list[Used] = field(default_factory=list)

    @property
    def documented(self) -> list[Setting]:
        return list(dict.fromkeys(setting for _, _, setting in self.used if setting is not None))


class Evaluator(ABC):
    """Values of expressions under one set of documented settings (``under`` swaps them). What a
    name is bound to is the view's (``names``): Python names and fields for the data-flow family,
    setting-carrying names for the mechanism detectors."""

    def __init__(self, settings: dict[str, Setting], alternatives: list[dict[str, Setting]] | None = None) -> None:
        self.settings = settings
        self.alternatives = alternatives or []  # other documented runs (settings.documented_alternatives)
        self.helpers: dict[str, Helper | None] = {}  # one-line functions; None: defined twice differently
        self.env_helpers: set[str] = set()  # functions reading an env key they are given
        self.scope: Scope = ()

    @abstractmethod
    def names(self, node: cst.Name | cst.Attribute, dotted: str | None) -> list[cst.BaseExpression | None]:
        """The expressions a name may be bound to (None: bound to something unknown)."""

    def add_helpers(self, module: cst.Module) -> None:
        for name, helper in one_line_helpers(module).items():
            self.helpers[name] = helper if name not in self.helpers else None

    @contextmanager
    def under(self, settings: dict[str, Setting]) -> Iterator[None]:
        saved, self.settings = self.settings, settings
        try:
            yield
        finally:
            self.settings = saved

    def first_documented_run(
        self,
        decide: Callable[[], T],
        runs: Callable[[T], bool],
        turned_on: Callable[[T], bool] | None = None,
    ) -> T:
        """``decide()`` under the effective settings, else under the first other documented run
        command that turns the code on (``turned_on``): "not run" only if no documented run reaches it."""
        first = decide()
        if runs(first):
            return first
        for alternative in self.alternatives:
            with self.under(alternative):
                other = decide()
            if (turned_on or runs)(other):
                return other
        return first

    def evaluate(self, node: cst.CSTNode) -> Evaluation:
        used: list[Used] = []
        return Evaluation(self.value(node, used), used)

    # ------------------------------------------------------------------ values
    def value(self, node: cst.CSTNode, used: list[Used], depth: int = 0) -> object:
        if depth > MAX_DEPTH:
            return UNKNOWN
        if isinstance(node, (cst.Integer, cst.Float)):
            try:
                return number_value(node)
            except ValueError:
                return UNKNOWN
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            literal = string_value(node)
            return UNKNOWN if literal is None else literal
        if isinstance(node, (cst.Name, cst.Attribute)):
            return self._name(node, used, depth)
        if isinstance(node, cst.Call):
            return self._call(node, used, depth)
        if isinstance(node, cst.Subscript) and (dotted_name(node.value) or "").endswith("environ"):
            element = node.slice[0].slice if node.slice else None
            key = self.value(element.value, used, depth + 1) if isinstance(element, cst.Index) else UNKNOWN
            return self._env(key, UNKNOWN, used) if isinstance(key, str) else UNKNOWN
        if isinstance(node, cst.UnaryOperation):
            return self._unary(node, used, depth)
        if isinstance(node, cst.BooleanOperation):
            return self._boolean(node, used, depth)
        if isinstance(node, cst.Comparison):
            return self._compare(node, used, depth)
        if isinstance(node, cst.BinaryOperation):
            return self._arithmetic(node, used, depth)
        if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
            items = [self.value(e.value, used, depth + 1) for e in node.elements]
            return UNKNOWN if any(i is UNKNOWN for i in items) else tuple(items)
        if isinstance(node, cst.IfExp):
            test = self.value(node.test, used, depth + 1)
            if test is UNKNOWN:
                return UNKNOWN
            return self.value(node.body if test else node.orelse, used, depth + 1)
        return UNKNOWN

    def value_in(self, scope: Scope, node: cst.CSTNode, used: list[Used], depth: int) -> object:
        """``node``'s value with ``scope`` as the parameter bindings."""
        saved, self.scope = self.scope, scope
        try:
            return self.value(node, used, depth)
        finally:
            self.scope = saved

    def _name(self, node: cst.Name | cst.Attribute, used: list[Used], depth: int) -> object:
        dotted = dotted_name(node)  # None for ``get_args().ttt``: the view may still know ``ttt``
        if dotted in _CONSTANTS:
            return _CONSTANTS[dotted]
        if dotted is not None and "." not in dotted and self.scope:
            argument = dict(self.scope[0]).get(dotted)
            if argument is not None:
                return self.value_in(self.scope[1:], argument, used, depth + 1)
        candidates = self.names(node, dotted)
        bound = [expr for expr in candidates if expr is not None]
        if not bound or len(bound) != len(candidates):
            return UNKNOWN
        values = [self.value_in((), expr, used, depth + 1) for expr in bound]  # a binding's own namespace
        if any(v is UNKNOWN for v in values) or len({repr(v) for v in values}) != 1:
            return UNKNOWN
        return values[0]

    def _env(self, key: str, default: object, used: list[Used]) -> object:
        """A documented setting wins over the code default. A log's hyperparameter dump prints the
        *converted* attribute (``ttt_enabled: True``), so a logged ``True``/``False`` stands for
        the ``1``/``0`` that produced it: read raw, ``int("True")`` fails, ``"False"`` is truthy."""
        setting = self.settings.get(key)
        if setting is not None:
            used.append((key, setting.value, setting))
            if setting.source_kind == "log" and setting.value in ("True", "False"):
                return "1" if setting.value == "True" else "0"
            return setting.value
        if default is not UNKNOWN:
            used.append((key, str(default), None))
        return default

    def _call(self, node: cst.Call, used: list[Used], depth: int) -> object:
        name = call_name(node)
        args = [a.value for a in node.args if a.keyword is None and not a.star]
        if name in ENV_CALLS or name.endswith((".environ.get", ".getenv")):
            return self._env_call(node, args, self.value(args[0], used, depth + 1) if args else UNKNOWN, used, depth)
        if name in ("int", "float", "bool", "str") and len(args) == 1:
            return convert(name, self.value(args[0], used, depth + 1))
        if name == "getattr" and len(args) >= 2:  # ``getattr(args, "ngram", False)`` is ``args.ngram``
            attr = string_value(args[1])
            if attr is None or not attr.isidentifier():
                return UNKNOWN
            return self._name(cst.Attribute(value=args[0], attr=cst.Name(attr)), used, depth + 1)
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("lower", "upper", "strip") and not args:
            inner = self.value(func.value, used, depth + 1)
            return getattr(inner, func.attr.value)() if isinstance(inner, str) else UNKNOWN
        helper = self.helpers.get(name) if isinstance(func, cst.Name) else None
        if helper is not None:
            return self._helper(helper, node, used, depth)
        tail = call_tail(node)
        if tail in self.env_helpers:  # ``_env_flag("X", 0)`` whose body is more than one line
            raw = self._env_call(node, args, string_value(args[0]) if args else None, used, depth)
            return UNKNOWN if raw is UNKNOWN else _convert_by_helper_name(tail, raw)
        return UNKNOWN

    def _env_call(
        self, call: cst.Call, args: list[cst.BaseExpression], key: object, used: list[Used], depth: int
    ) -> object:
        """``os.environ.get(key, default)`` and the helpers shaped like it; no default is None."""
        if not isinstance(key, str):
            return UNKNOWN
        keyword = (a.value for a in call.args if a.keyword is not None and a.keyword.value == "default")
        default = next(keyword, None) if len(args) < 2 else args[1]
        return self._env(key, None if default is None else self.value(default, used, depth + 1), used)

    def _helper(self, helper: Helper, call: cst.Call, used: list[Used], depth: int) -> object:
        """``_eb("TTT_LEGAL")`` with ``def _eb(k, d="0"): return bool(int(os.environ.get(k, d)))``
        (minified hyperparameter classes), evaluated with the call's arguments and defaults."""
        params, body = helper
        ordered = list(params.posonly_params) + list(params.params)
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if len(positional) > len(ordered) or any(a.star for a in call.args):
            return UNKNOWN
        bound = {param.name.value: arg.value for param, arg in zip(ordered, positional)}
        bound.update({a.keyword.value: a.value for a in call.args if a.keyword is not None})
        for param in ordered + list(params.kwonly_params):
            if param.name.value not in bound:
                if param.default is None:
                    return UNKNOWN
                bound[param.name.value] = param.default
        return self.value_in((tuple(bound.items()),) + self.scope, body, used, depth + 1)

    def _unary(self, node: cst.UnaryOperation, used: list[Used], depth: int) -> object:
        operand = self.value(node.expression, used, depth + 1)
        if operand is UNKNOWN:
            return UNKNOWN
        if isinstance(node.operator, cst.Not):
            return not operand
        if isinstance(node.operator, cst.Minus) and isinstance(operand, (int, float)):
            return -operand
        return UNKNOWN

    def _boolean(self, node: cst.BooleanOperation, used: list[Used], depth: int) -> object:
        """Python's ``and``/``or``, plus what is known when one side is unknown: a false side
        of ``and`` (a true side of ``or``) decides it."""
        left = self.value(node.left, used, depth + 1)
        right = self.value(node.right, used, depth + 1)
        deciding = not isinstance(node.operator, cst.And)  # the truth that decides: True for ``or``
        if left is not UNKNOWN and bool(left) == deciding:
            return left
        if right is not UNKNOWN and bool(right) == deciding:
            return deciding if left is UNKNOWN else right
        return UNKNOWN if left is UNKNOWN or right is UNKNOWN else right

    def _compare(self, node: cst.Comparison, used: list[Used], depth: int) -> object:
        left = self.value(node.left, used, depth + 1)
        for target in node.comparisons:
            right = self.value(target.comparator, used, depth + 1)
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            result = _apply(target.operator, left, right)
            if result is UNKNOWN or not result:
                return result
            left = right
        return True

    def _arithmetic(self, node: cst.BinaryOperation, used: list[Used], depth: int) -> object:
        left = self.value(node.left, used, depth + 1)
        right = self.value(node.right, used, depth + 1)
        if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
            return UNKNOWN
        return _apply(node.operator, left, right)


def one_line_helpers(module: cst.Module) -> dict[str, Helper]:
    """Module-level functions whose whole body is ``return <expr>`` (``def _ei(k, d): return
    int(os.environ.get(k, str(d)))``), by name."""
    found: dict[str, Helper] = {}
    for statement in module.body:
        if (
            not isinstance(statement, cst.FunctionDef)
            or statement.params.star_arg not in (None, cst.MaybeSentinel.DEFAULT)
            or statement.params.star_kwarg is not None
        ):
            continue
        body = statement.body.body
        if len(body) != 1:
            continue
        line = body[0]
        smalls = line.body if isinstance(line, cst.SimpleStatementLine) else [line]
        if len(smalls) == 1 and isinstance(smalls[0], cst.Return) and smalls[0].value is not None:
            found[statement.name.value] = (statement.params, smalls[0].value)
    return found


def env_helpers(indexes: Iterable[ModuleIndex]) -> set[str]:
    """Functions that read an env key they are given (an env read whose key is not a literal);
    both views read their calls as env reads (``_env_flag("X", 0)``)."""
    found: set[str] = set()
    for index in indexes:
        for call in index.calls:
            if call.args and call_name(call) in ENV_CALLS and string_value(call.args[0].value) is None:
                function = index.enclosing_function(call)
                if function is not None:
                    found.add(function.name.value)
    return found


def convert(kind: str, value: object) -> object:
    """``int``/``float``/``bool``/``str`` as Python applies them, plus ``int("1.5")`` = 1 and
    ``int("true")`` = 1 (the env strings these converters meet)."""
    if value is UNKNOWN:
        return UNKNOWN
    try:
        if isinstance(value, str) and kind in ("int", "float"):
            text = value.strip().lower()
            if text in ("true", "false"):
                return int(text == "true")
            if kind == "int" and "." in text:
                return int(float(text))
        return {"int": int, "float": float, "bool": bool, "str": str}[kind](value)
    except (TypeError, ValueError, OverflowError):
        return UNKNOWN


def _convert_by_helper_name(helper: str, raw: object) -> object:
    lowered = helper.lower()
    if "bool" in lowered or "flag" in lowered:
        return str(raw).strip().lower() in _TRUTHY if not isinstance(raw, bool) else raw
    if "int" in lowered:
        return convert("int", raw)
    if "float" in lowered:
        return convert("float", raw)
    return raw


_OPERATORS: dict[type, Callable[[Any, Any], object]] = {
    cst.Add: lambda a, b: a + b,
    cst.Subtract: lambda a, b: a - b,
    cst.Multiply: lambda a, b: a * b,
    cst.Divide: lambda a, b: a / b,
    cst.Equal: lambda a, b: a == b,
    cst.NotEqual: lambda a, b: a != b,
    cst.LessThan: lambda a, b: a < b,
    cst.LessThanEqual: lambda a, b: a <= b,
    cst.GreaterThan: lambda a, b: a > b,
    cst.GreaterThanEqual: lambda a, b: a >= b,
    cst.In: lambda a, b: a in b,
    cst.NotIn: lambda a, b: a not in b,
    cst.Is: lambda a, b: a is b,
    cst.IsNot: lambda a, b: a is not b,
}


def _apply(operator: cst.BaseCompOp | cst.BaseBinaryOp, left: object, right: object) -> object:
    compare = _OPERATORS.get(type(operator))
    if compare is None:
        return UNKNOWN
    try:
        return compare(left, right)
    except (TypeError, ZeroDivisionError):
        return UNKNOWN
