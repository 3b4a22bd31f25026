"""Evaluate the conditions around an effect under the configuration that actually ran.

Why: legality is usually switched by environment variables read with a default
(``TTT_ENABLED="0"``) that the README run command, a ``*.sh`` script or the logged
hyperparameters turn on. A finding in code that no documented configuration runs is only
informational; a finding enabled by a documented setting names that setting and where it
came from. The evaluator is a tiny constant folder over literals, ``os.environ.get``/
``os.getenv`` reads, ``int``/``float``/``bool``/``str`` and comparisons — anything else is
unknown and counts as "may run".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.model import Cond
from harness.check.parse import ParsedSource
from harness.submission import Setting


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
_MAX_DEPTH = 12


@dataclass
class Outcome:
    """Whether an effect runs: ``False`` when some condition is false under the effective
    settings; ``enabled_by`` lists documented settings that made its conditions true."""

    runs: bool
    disabled_by: str = ""
    enabled_by: list[Setting] = field(default_factory=list)


class Switches:
    """Bindings of names across all sources (env reads, constants, aliases), and their values."""

    def __init__(
        self,
        parsed_sources: list[ParsedSource],
        settings: dict[str, Setting],
        alternatives: list[dict[str, Setting]] | None = None,
    ) -> None:
        self.settings = settings
        self.alternatives = alternatives or []
        self._scope: tuple[tuple[tuple[str, cst.BaseExpression], ...], ...] = ()
        self.bindings: dict[str, list[tuple[cst.BaseExpression | None, ParsedSource]]] = {}
        self.helpers: dict[str, tuple[cst.Parameters, cst.BaseExpression] | None] = {}
        for parsed in parsed_sources:
            self._collect(parsed)
            for name, helper in _one_line_helpers(parsed.module).items():
                # the same name defined twice differently: unknown rather than guessed
                self.helpers[name] = helper if name not in self.helpers else None

    def _collect(self, parsed: ParsedSource) -> None:
        collector = _BindingCollector()
        collector.walk(parsed.module)
        for name, value in collector.found:
            self.bindings.setdefault(name, []).append((value, parsed))

    # ------------------------------------------------------------------ evaluation
    def value(self, node: cst.BaseExpression, used: set[str], depth: int = 0) -> object:
        if depth > _MAX_DEPTH:
            return UNKNOWN
        if isinstance(node, cst.Integer):
            return _int(node.value)
        if isinstance(node, cst.Float):
            try:
                return float(node.value.replace("_", ""))
            except ValueError:
                return UNKNOWN
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            text = N.string_value(node)
            return UNKNOWN if text is None else text
        if isinstance(node, (cst.Name, cst.Attribute)):
            dotted = N.dotted_name(node)
            if dotted is None:
                return UNKNOWN
            if dotted in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[dotted]
            if dotted == "__name__":
                return "__main__"
            if "." not in dotted and self._scope:
                argument = dict(self._scope[0]).get(dotted)
                if argument is not None:
                    saved, self._scope = self._scope, self._scope[1:]
                    try:
                        return self.value(argument, used, depth + 1)
                    finally:
                        self._scope = saved
            key = ("." if "." in dotted else "") + N.last_part(dotted)
            return self._binding(key, used, depth)
        if isinstance(node, cst.Call):
            return self._call(node, used, depth)
        if isinstance(node, cst.Subscript) and (N.dotted_name(node.value) or "").endswith("environ"):
            element = node.slice[0].slice if node.slice else None
            key = self.value(element.value, used, depth + 1) if isinstance(element, cst.Index) else UNKNOWN
            if isinstance(key, str) and key in self.settings:
                used.add(key)
                return _env_string(self.settings[key])
            return UNKNOWN
        if isinstance(node, cst.UnaryOperation):
            operand = self.value(node.expression, used, depth + 1)
            if operand is UNKNOWN:
                return UNKNOWN
            if isinstance(node.operator, cst.Not):
                return not operand
            if isinstance(node.operator, cst.Minus) and isinstance(operand, (int, float)):
                return -operand
            return UNKNOWN
        if isinstance(node, cst.BooleanOperation):
            left = self.value(node.left, used, depth + 1)
            right = self.value(node.right, used, depth + 1)
            if isinstance(node.operator, cst.And):
                if left is not UNKNOWN and not left:
                    return left
                if right is not UNKNOWN and not right and left is UNKNOWN:
                    return False
                return UNKNOWN if left is UNKNOWN or right is UNKNOWN else right
            if left is not UNKNOWN and left:
                return left
            if right is not UNKNOWN and right and left is UNKNOWN:
                return True
            return UNKNOWN if left is UNKNOWN or right is UNKNOWN else right
        if isinstance(node, cst.Comparison):
            return self._compare(node, used, depth)
        if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
            items = [self.value(e.value, used, depth + 1) for e in node.elements]
            return UNKNOWN if any(i is UNKNOWN for i in items) else tuple(items)
        if isinstance(node, cst.IfExp):
            test = self.value(node.test, used, depth + 1)
            if test is UNKNOWN:
                return UNKNOWN
            return self.value(node.body if test else node.orelse, used, depth + 1)
        return UNKNOWN

    def _binding(self, name: str, used: set[str], depth: int) -> object:
        candidates = self.bindings.get(name, [])
        if not candidates or any(expr is None for expr, _ in candidates):
            return UNKNOWN
        saved, self._scope = self._scope, ()  # a binding's expression lives in its own namespace
        try:
            values = [self.value(expr, used, depth + 1) for expr, _ in candidates]  # type: ignore[arg-type]
        finally:
            self._scope = saved
        if any(v is UNKNOWN for v in values) or len({repr(v) for v in values}) != 1:
            return UNKNOWN
        return values[0]

    def _call(self, node: cst.Call, used: set[str], depth: int) -> object:
        name = N.callee_name(node)
        args = [a for a in node.args if a.keyword is None]
        if name.endswith("environ.get") or name.endswith("getenv"):
            key = self.value(args[0].value, used, depth + 1) if args else UNKNOWN
            if not isinstance(key, str):
                return UNKNOWN
            if key in self.settings:
                used.add(key)
                return _env_string(self.settings[key])
            return self.value(args[1].value, used, depth + 1) if len(args) > 1 else None
        if name in ("int", "float", "bool", "str") and len(args) == 1:
            inner = self.value(args[0].value, used, depth + 1)
            if inner is UNKNOWN:
                return UNKNOWN
            try:
                if name == "int":
                    return int(float(inner)) if isinstance(inner, str) and "." in inner else int(inner)  # type: ignore[arg-type]
                return {"float": float, "bool": bool, "str": str}[name](inner)  # type: ignore[operator]
            except (TypeError, ValueError):
                return UNKNOWN
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("lower", "upper", "strip") and not args:
            inner = self.value(node.func.value, used, depth + 1)
            return getattr(inner, node.func.attr.value)() if isinstance(inner, str) else UNKNOWN
        helper = self.helpers.get(name) if isinstance(node.func, cst.Name) else None
        if helper is not None:
            return self._helper(helper, node, used, depth)
        return UNKNOWN

    def _helper(
        self, helper: tuple[cst.Parameters, cst.BaseExpression], call: cst.Call, used: set[str], depth: int
    ) -> object:
        """``_eb("TTT_LEGAL")`` with ``def _eb(k, d="0"): return bool(int(os.environ.get(k, d)))``:
        the one-line env readers of minified hyperparameter classes, evaluated with the call's
        arguments (defaults for the rest), like a condition lifted through a call."""
        params, body = helper
        ordered = list(params.posonly_params) + list(params.params)
        bound: dict[str, cst.BaseExpression] = {}
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if len(positional) > len(ordered) or any(a.star for a in call.args):
            return UNKNOWN
        for param, arg in zip(ordered, positional):
            bound[param.name.value] = arg.value
        for arg in call.args:
            if arg.keyword is not None:
                bound[arg.keyword.value] = arg.value
        for param in ordered + list(params.kwonly_params):
            if param.name.value not in bound:
                if param.default is None:
                    return UNKNOWN
                bound[param.name.value] = param.default
        saved = self._scope
        self._scope = (tuple(bound.items()),) + self._scope
        try:
            return self.value(body, used, depth + 1)
        finally:
            self._scope = saved

    def _compare(self, node: cst.Comparison, used: set[str], depth: int) -> object:
        left = self.value(node.left, used, depth + 1)
        for target in node.comparisons:
            right = self.value(target.comparator, used, depth + 1)
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            try:
                result = _apply(target.operator, left, right)
            except TypeError:
                return UNKNOWN
            if result is UNKNOWN or not result:
                return result
            left = right
        return True

    # ------------------------------------------------------------------ outcome
    def outcome(self, conds: tuple[Cond, ...]) -> Outcome:
        """Under the effective settings; code they leave off still runs if another documented
        run command turns it on (then that command's settings are named)."""
        first = self._outcome(conds)
        if first.runs or not self.alternatives:
            return first
        effective = self.settings
        try:
            for alternative in self.alternatives:
                self.settings = alternative
                other = self._outcome(conds)
                if other.runs and other.enabled_by:
                    return other
        finally:
            self.settings = effective
        return first

    def _outcome(self, conds: tuple[Cond, ...]) -> Outcome:
        enabled: list[Setting] = []
        for cond in conds:
            used: set[str] = set()
            self._scope = cond.scope
            try:
                result = self.value(cond.expr, used)
            finally:
                self._scope = ()
            if result is UNKNOWN:
                continue
            truth = (isinstance(result, (int, float)) and result > 0) if cond.range_count else bool(result)
            documented = [self.settings[name] for name in sorted(used)]
            if truth != cond.want:
                reason = _describe(cond, documented)
                return Outcome(runs=False, disabled_by=reason)
            enabled.extend(s for s in documented if s not in enabled)
        return Outcome(runs=True, enabled_by=enabled)


def _one_line_helpers(module: cst.Module) -> dict[str, tuple[cst.Parameters, cst.BaseExpression]]:
    """Module-level functions whose whole body is ``return <expr>`` (``def _ei(k, d): return
    int(os.environ.get(k, str(d)))``), by name."""
    found: dict[str, tuple[cst.Parameters, cst.BaseExpression]] = {}
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


def _env_string(setting: Setting) -> str:
    """The env string behind a setting. A log's hyperparameter dump prints the *converted*
    attribute (``ttt_enabled: True`` for ``bool(int(os.environ.get("TTT_ENABLED", "0")))``), so
    a logged ``True``/``False`` stands for the ``1``/``0`` that produced it; read raw, ``int("True")``
    fails and the switch would look unknown (and ``False`` would look like "may run")."""
    if setting.source_kind == "log" and setting.value in ("True", "False"):
        return "1" if setting.value == "True" else "0"
    return setting.value


def _describe(cond: Cond, documented: list[Setting]) -> str:
    code = cond.parsed.flat_code(cond.expr)
    where = f"{cond.parsed.source.display_name}:{cond.line}"
    state = "false" if cond.want else "true"  # the path needs the opposite
    if documented:
        origin = ", ".join(f"{s.name}={s.value} in {s.file}:{s.line}" for s in documented)
        return f"`{code}` at {where} is {state} with {origin}"
    return f"`{code}` at {where} is {state} with the code defaults (no documented run sets it)"


def _int(text: str) -> object:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        return UNKNOWN


def _apply(operator: cst.BaseCompOp, left: object, right: object) -> object:
    if isinstance(operator, cst.Equal):
        return left == right
    if isinstance(operator, cst.NotEqual):
        return left != right
    if isinstance(operator, cst.LessThan):
        return left < right  # type: ignore[operator]
    if isinstance(operator, cst.LessThanEqual):
        return left <= right  # type: ignore[operator]
    if isinstance(operator, cst.GreaterThan):
        return left > right  # type: ignore[operator]
    if isinstance(operator, cst.GreaterThanEqual):
        return left >= right  # type: ignore[operator]
    if isinstance(operator, cst.In):
        return left in right  # type: ignore[operator]
    if isinstance(operator, cst.NotIn):
        return left not in right  # type: ignore[operator]
    if isinstance(operator, cst.Is):
        return left is right
    if isinstance(operator, cst.IsNot):
        return left is not right
    return UNKNOWN


class _BindingCollector:
    """Every binding of a name that a condition could read: assignments at any level (so that
    ``run_ttt = h.ttt_enabled`` is followed), plus loop variables and function parameters as
    *unknown* bindings — a name bound several ways with different values is unknown. Fields
    (class-body names, ``obj.x = …``) and plain names are kept apart, so a parameter called
    ``ttt_enabled`` does not blur ``args.ttt_enabled``."""

    def __init__(self) -> None:
        self.found: list[tuple[str, cst.BaseExpression | None]] = []

    def walk(self, module: cst.Module) -> None:
        # exact-type tests: isinstance against libcst's ABC-based classes is a Python call each,
        # and this walk visits every node of every source
        stack: list[tuple[cst.CSTNode, bool]] = [(module, False)]
        while stack:
            node, in_class = stack.pop()
            kind = type(node)
            if kind is cst.Assign:
                self._record([t.target for t in node.targets], node.value, in_class)  # type: ignore[attr-defined]
            elif kind is cst.AnnAssign and node.value is not None:  # type: ignore[attr-defined]
                self._record([node.target], node.value, in_class)  # type: ignore[attr-defined]
            elif kind is cst.For or kind is cst.CompFor:
                self._unknown(node.target)  # type: ignore[attr-defined]
            elif kind is cst.NamedExpr:
                self._record([node.target], node.value, False)  # type: ignore[attr-defined]
            elif kind is cst.Param:
                self.found.append((node.name.value, None))  # type: ignore[attr-defined]
            elif _is_expression_type(kind) and kind is not cst.Lambda:
                if not _contains_binding(node):
                    continue
            if kind is cst.ClassDef:
                inner = True
            elif kind is cst.FunctionDef:
                inner = False
            else:
                inner = in_class
            stack.extend((child, inner) for child in N.children(node))

    def _record(self, targets: list[cst.BaseExpression], value: cst.BaseExpression, in_class: bool) -> None:
        for target in targets:
            dotted = N.dotted_name(target)
            if dotted is None:
                self._unknown(target)
                continue
            same = isinstance(value, cst.Name) and value.value == N.last_part(dotted)
            if same:  # ``self.ttt_enabled = ttt_enabled`` adds nothing
                continue
            field = in_class or "." in dotted
            self.found.append((("." if field else "") + N.last_part(dotted), value))

    def _unknown(self, target: cst.CSTNode) -> None:
        for name in N.assigned_names(target):
            self.found.append((("." if "." in name else "") + N.last_part(name), None))


_EXPRESSION_TYPES: dict[type, bool] = {}


def _is_expression_type(kind: type) -> bool:
    known = _EXPRESSION_TYPES.get(kind)
    if known is None:
        known = _EXPRESSION_TYPES[kind] = issubclass(kind, cst.BaseExpression)
    return known


def _contains_binding(node: cst.CSTNode) -> bool:
    """Expressions rarely bind names; only walrus and comprehensions do."""
    stack = [node]
    while stack:
        current = stack.pop()
        if type(current) is cst.NamedExpr or type(current) is cst.CompFor:
            return True
        stack.extend(N.children(current))
    return False
