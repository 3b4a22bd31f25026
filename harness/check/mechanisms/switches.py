"""Decide whether flagged code runs under the configuration the submitter documented.

Why: most mechanisms (n-gram mixers, SLOT, within-word boosts) sit behind environment
switches whose code default is off, and the README run command, a ``*.sh`` script or the
log's hyperparameter dump turns them on. A mechanism off under every documented
configuration is reported as ``info``; one turned on by a documented setting names that
setting and where it came from, so the reviewer can check the claim.

The evaluation is deliberately small: env reads with literal defaults (``os.environ.get``,
``os.getenv``, ``os.environ[...]``, ``_env_int("X", 0)``-style helpers), the usual converters
(``int``/``float``/``bool``/``str``, ``.lower()``, ``== "1"``, ``in (...)``), class attributes
and module constants, and ``if``/early-``return``/``range(n)`` guards, followed through the
call sites of the enclosing function. Anything else is "unknown", which keeps the finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from harness.findings import Finding, Severity
from harness.submission import Setting

from .syntax import (
    Hit,
    ModuleIndex,
    call_name,
    call_tail,
    dotted_name,
    last_identifier,
    number_value,
    string_value,
)

UNKNOWN = object()  # sentinel: value not decidable statically
_ENV_CALLS = {"os.environ.get", "environ.get", "os.getenv", "getenv"}
_TRUTHY = {"1", "true", "yes", "on", "y", "t"}
_MAX_CALL_DEPTH = 4


@dataclass(frozen=True)
class Binding:
    """``name`` is bound to ``expr`` (evaluated with env reads resolved)."""

    key: str
    expr: cst.BaseExpression
    index: ModuleIndex


@dataclass
class Evaluation:
    """The value of an expression plus the env settings that decided it."""

    value: object
    used: list[tuple[str, str, Setting | None]] = field(default_factory=list)


class Configuration:
    """Env-switch bindings of one submission, evaluated under its documented settings."""

    def __init__(
        self,
        indexes: list[ModuleIndex],
        settings: dict[str, Setting],
        alternatives: list[dict[str, Setting]] | None = None,
    ) -> None:
        self.indexes = indexes
        self.settings = settings
        self.alternatives = alternatives or []  # other documented runs (settings.documented_alternatives)
        self.bindings: dict[str, list[Binding]] = {}
        self.env_helpers: set[str] = set()
        for index in indexes:
            self._collect_env_helpers(index)
        for index in indexes:
            self._collect_bindings(index)
        self._reach_memo: dict[int, tuple[bool | None, list]] = {}
        self._calls_by_name: dict[str, list[tuple[ModuleIndex, cst.Call]]] = {}
        for index in indexes:
            for call in index.calls:
                tail = call_tail(call)
                if tail:
                    self._calls_by_name.setdefault(tail, []).append((index, call))
                for argument in call.args:
                    # ``timed_eval("ngram", eval_val_ngram, h, ...)`` runs ``eval_val_ngram`` where
                    # the call to ``timed_eval`` runs, under that call's guards (#2121)
                    if isinstance(argument.value, cst.Name):
                        self._calls_by_name.setdefault(argument.value.value, []).append((index, call))

    # ---- bindings -------------------------------------------------------------------
    def _collect_env_helpers(self, index: ModuleIndex) -> None:
        """Functions like ``def _env_int(name, default): return int(os.environ.get(name, default))``:
        an env read whose key is not a literal, inside a function."""
        for call in index.calls:
            if call_name(call) not in _ENV_CALLS or not call.args:
                continue
            if string_value(call.args[0].value) is not None:
                continue
            function = index.enclosing_function(call)
            if function is not None:
                self.env_helpers.add(function.name.value)

    def _collect_bindings(self, index: ModuleIndex) -> None:
        """Names bound from an env read anywhere, and literal module/class-level constants."""
        env_nodes: list[cst.CSTNode] = [
            c for c in index.calls if call_name(c) in _ENV_CALLS or call_tail(c) in self.env_helpers
        ]
        env_nodes += [s for s in index.subscripts if call_name_of_value(s.value) in {"os.environ", "environ"}]
        statements: dict[int, cst.CSTNode] = {}
        for node in env_nodes:
            for ancestor in index.ancestors(node):
                if isinstance(ancestor, (cst.Assign, cst.AnnAssign)):
                    statements[id(ancestor)] = ancestor
                    break
                if isinstance(ancestor, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
                    break
        for statement in index.assigns:
            if isinstance(statement, (cst.Assign, cst.AnnAssign)) and statement.value is not None:
                if _literal(statement.value) is not UNKNOWN and index.enclosing_function(statement) is None:
                    statements[id(statement)] = statement
        for statement in statements.values():
            targets = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else [statement.target]
            for target in targets:
                key = last_identifier(target)
                if key is not None:
                    self.bindings.setdefault(key.lower(), []).append(Binding(key.lower(), statement.value, index))

    # ---- evaluation -----------------------------------------------------------------
    def evaluate(self, expr: cst.CSTNode, depth: int = 0) -> Evaluation:
        used: list[tuple[str, str, Setting | None]] = []
        value = self._eval(expr, used, depth)
        return Evaluation(value, used)

    def _env(self, name: str, default: object, used: list) -> object:
        setting = self.settings.get(name)
        if setting is not None:
            used.append((name, setting.value, setting))
            return setting.value
        if default is UNKNOWN:
            return UNKNOWN
        used.append((name, str(default), None))
        return default

    def _eval(self, expr: cst.CSTNode, used: list, depth: int) -> object:
        if depth > 12:
            return UNKNOWN
        literal = _literal(expr)
        if literal is not UNKNOWN:
            return literal
        if isinstance(expr, cst.Call):
            return self._eval_call(expr, used, depth)
        if isinstance(expr, cst.Subscript) and call_name_of_value(expr.value) in {"os.environ", "environ"}:
            key = string_value(expr.slice[0].slice.value) if isinstance(expr.slice[0].slice, cst.Index) else None
            return self._env(key, UNKNOWN, used) if key else UNKNOWN
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._eval_name(expr, used, depth)
        if isinstance(expr, cst.UnaryOperation):
            inner = self._eval(expr.expression, used, depth + 1)
            if inner is UNKNOWN:
                return UNKNOWN
            if isinstance(expr.operator, cst.Not):
                return not _truthy(inner)
            if isinstance(expr.operator, cst.Minus) and isinstance(inner, (int, float)):
                return -inner
            return UNKNOWN
        if isinstance(expr, cst.BooleanOperation):
            left = self._eval(expr.left, used, depth + 1)
            right = self._eval(expr.right, used, depth + 1)
            if isinstance(expr.operator, cst.And):
                if left is not UNKNOWN and not _truthy(left):
                    return left
                if right is not UNKNOWN and not _truthy(right):
                    return False if left is UNKNOWN else right
                return UNKNOWN if UNKNOWN in (left, right) else right
            if left is not UNKNOWN and _truthy(left):
                return left
            if right is not UNKNOWN and _truthy(right):
                return True if left is UNKNOWN else right
            return UNKNOWN if UNKNOWN in (left, right) else right
        if isinstance(expr, cst.Comparison):
            return self._eval_comparison(expr, used, depth)
        if isinstance(expr, cst.BinaryOperation):
            left = self._eval(expr.left, used, depth + 1)
            right = self._eval(expr.right, used, depth + 1)
            if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
                return UNKNOWN
            try:
                if isinstance(expr.operator, cst.Add):
                    return left + right
                if isinstance(expr.operator, cst.Subtract):
                    return left - right
                if isinstance(expr.operator, cst.Multiply):
                    return left * right
                if isinstance(expr.operator, cst.Divide):
                    return left / right
            except ZeroDivisionError:
                return UNKNOWN
            return UNKNOWN
        return UNKNOWN

    def _eval_call(self, call: cst.Call, used: list, depth: int) -> object:
        name = call_name(call)
        args = [a.value for a in call.args if a.keyword is None]
        keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        if name in _ENV_CALLS or call_tail(call) in self.env_helpers:
            key = string_value(args[0]) if args else None
            if key is None:
                return UNKNOWN
            default_expr = args[1] if len(args) > 1 else keywords.get("default")
            default = _literal(default_expr) if default_expr is not None else None
            raw = self._env(key, default, used)
            if name in _ENV_CALLS or raw is UNKNOWN:
                return raw
            return _convert_by_helper_name(call_tail(call), raw)
        if name in {"int", "float", "bool", "str"} and len(args) == 1:
            inner = self._eval(args[0], used, depth + 1)
            return _convert(name, inner)
        if (
            name == "getattr" and len(args) >= 2
        ):  # ``getattr(args, "artifact_ngram", False)`` is ``args.artifact_ngram``
            attr = string_value(args[1])
            if attr is not None and attr.isidentifier() and self.bindings.get(attr.lower()):
                return self._eval_name(cst.Name(attr), used, depth + 1)
            return UNKNOWN
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in {"lower", "strip", "upper"}:
            inner = self._eval(call.func.value, used, depth + 1)
            if isinstance(inner, str):
                return getattr(inner, call.func.attr.value)()
            return UNKNOWN
        return UNKNOWN

    def _eval_name(self, expr: cst.CSTNode, used: list, depth: int) -> object:
        key = last_identifier(expr)
        if key is None:
            return UNKNOWN
        bindings = self.bindings.get(key.lower(), [])
        if not bindings:
            return UNKNOWN
        values = []
        for binding in bindings:
            values.append(self._eval(binding.expr, used, depth + 1))
        first = values[0]
        if first is UNKNOWN or any(v is UNKNOWN or v != first for v in values[1:]):
            return UNKNOWN
        return first

    def _eval_comparison(self, expr: cst.Comparison, used: list, depth: int) -> object:
        left = self._eval(expr.left, used, depth + 1)
        result = True
        for target in expr.comparisons:
            right = self._eval(target.comparator, used, depth + 1)
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            outcome = _compare(target.operator, left, right)
            if outcome is UNKNOWN:
                return UNKNOWN
            result = result and bool(outcome)
            left = right
        return result

    # ---- guards ---------------------------------------------------------------------
    def node_state(self, index: ModuleIndex, node: cst.CSTNode) -> tuple[bool | None, list]:
        """(True on / False off / None unknown) for ``node`` and the settings that decided it."""
        return self._state(index, node, depth=0, visiting=set())

    def _state(self, index: ModuleIndex, node: cst.CSTNode, depth: int, visiting: set) -> tuple[bool | None, list]:
        used: list = []
        local: bool | None = True
        child: cst.CSTNode = node
        for ancestor in index.ancestors(node):
            guard = self._guard_of(ancestor, child, used)
            local = _and(local, guard)
            if isinstance(ancestor, (cst.IndentedBlock, cst.Module)):
                local = _and(local, self._early_exit_guard(ancestor, child, used))
            if isinstance(ancestor, cst.FunctionDef):
                reach, reach_used = self._function_reach(ancestor, depth, visiting)
                used.extend(reach_used)
                return _and(local, reach), used
            child = ancestor
        return local, used

    def _guard_of(self, ancestor: cst.CSTNode, child: cst.CSTNode, used: list) -> bool | None:
        if isinstance(ancestor, cst.IfExp) and child is not ancestor.test:
            # ``load_sidecar(p) if args.byte_sidecar else None``
            value = self._eval(ancestor.test, used, 0)
            if value is UNKNOWN:
                return None
            return _truthy(value) if child is ancestor.body else not _truthy(value)
        if isinstance(ancestor, cst.If) and child is not ancestor.test:
            value = self._eval(ancestor.test, used, 0)
            if value is UNKNOWN:
                return None
            return _truthy(value) if child is ancestor.body else not _truthy(value)
        if isinstance(ancestor, cst.For) and child is ancestor.body:
            iterator = ancestor.iter
            if isinstance(iterator, cst.Call) and call_name(iterator) == "range" and len(iterator.args) == 1:
                count = self._eval(iterator.args[0].value, used, 0)
                if isinstance(count, (int, float)) and not isinstance(count, bool):
                    return count > 0
        return True

    def _early_exit_guard(self, block: cst.CSTNode, child: cst.CSTNode, used: list) -> bool | None:
        """``if not cfg.enabled: return`` before ``child`` in the same block."""
        state: bool | None = True
        for statement in block.body:
            if statement is child:
                break
            if isinstance(statement, cst.If) and statement.orelse is None and _only_exits(statement.body):
                value = self._eval(statement.test, used, 0)
                state = _and(state, None if value is UNKNOWN else not _truthy(value))
        return state

    def _function_reach(self, function: cst.FunctionDef, depth: int, visiting: set) -> tuple[bool | None, list]:
        """Whether any call site of ``function`` runs (memoized: a method like ``forward`` has
        many call sites, and each would otherwise be re-walked for every finding inside it)."""
        if depth >= _MAX_CALL_DEPTH or id(function) in visiting:
            return None, []
        cached = self._reach_memo.get(id(function))
        if cached is not None:
            return cached
        result = self._compute_reach(function, depth, visiting)
        self._reach_memo[id(function)] = result
        return result

    def _compute_reach(self, function: cst.FunctionDef, depth: int, visiting: set) -> tuple[bool | None, list]:
        sites = self._calls_by_name.get(function.name.value, [])
        if not sites:
            return None, []
        visiting = visiting | {id(function)}
        states: list[bool | None] = []
        used: list = []
        for index, call in sites:
            state, site_used = self._state(index, call, depth + 1, visiting)
            states.append(state)
            used.extend(site_used)
        if any(s is True for s in states):
            return True, used
        if all(s is False for s in states):
            return False, used
        return None, used

    # ---- findings -------------------------------------------------------------------
    def finalize(self, hit: Hit) -> Finding:
        """Turn a detector hit into a finding whose severity reflects the documented config:
        off only when the effective run and every other documented run leave it off."""
        state, used = self._hit_state(hit)
        if state is False:
            for alternative in self.alternatives:
                other_state, other_used = self._under(alternative, hit)
                if other_state is not False:
                    state, used = other_state, other_used
                    break
        severity, message = hit.severity, hit.message
        if state is False:
            severity = Severity.INFO
            message += f" — not active in any documented configuration ({_describe(used, on=False)})"
        else:
            documented = [u for u in used if u[2] is not None]
            if documented:
                message += f" — enabled by {_describe(documented, on=True)}"
        return Finding(
            rule=hit.rule,
            severity=severity,
            file=hit.index.name,
            line=hit.index.line(hit.node),
            message=message,
            path=hit.path,
        )

    def _under(self, settings: dict[str, Setting], hit: Hit) -> tuple[bool | None, list]:
        """The hit's state under other settings (reach memos belong to one set of settings)."""
        saved = self.settings, self._reach_memo
        self.settings, self._reach_memo = settings, {}
        try:
            return self._hit_state(hit)
        finally:
            self.settings, self._reach_memo = saved

    def _hit_state(self, hit: Hit) -> tuple[bool | None, list]:
        state, used = self.node_state(hit.index, hit.node)
        for factor in hit.zero_factors:
            evaluation = self.evaluate(factor)
            if isinstance(evaluation.value, (int, float)) and evaluation.value == 0:
                state = False
                used = used + evaluation.used
            elif evaluation.value is not UNKNOWN:
                used = used + evaluation.used
        return state, used


def call_name_of_value(expr: cst.CSTNode) -> str:
    return dotted_name(expr) or ""


def _describe(used: list, on: bool) -> str:
    parts: list[str] = []
    seen: set[str] = set()
    for name, value, setting in used:
        if name in seen:
            continue
        seen.add(name)
        if setting is not None:
            parts.append(f"{name}={value} in {setting.file}:{setting.line}")
        elif not on:
            parts.append(f"{name} defaults to {value!r} in the code")
    return ", ".join(parts) if parts else "switched off in the code"


def _only_exits(body: cst.BaseSuite) -> bool:
    """True when a suite does nothing but return/continue/raise (an early-exit guard)."""
    if isinstance(body, cst.SimpleStatementSuite):
        smalls = list(body.body)
    else:
        smalls = []
        for statement in body.body:
            if not isinstance(statement, cst.SimpleStatementLine):
                return False
            smalls.extend(statement.body)
    return bool(smalls) and all(isinstance(s, (cst.Return, cst.Continue, cst.Raise)) for s in smalls)


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value != ""
    return bool(value)


def _literal(expr: cst.CSTNode | None) -> object:
    if expr is None:
        return UNKNOWN
    text = string_value(expr)
    if text is not None:
        return text
    number = number_value(expr)
    if number is not None:
        return number
    if isinstance(expr, cst.Name) and expr.value in {"True", "False", "None"}:
        return {"True": True, "False": False, "None": None}[expr.value]
    if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
        values = [_literal(element.value) for element in expr.elements]
        return UNKNOWN if any(v is UNKNOWN for v in values) else tuple(values)
    return UNKNOWN


def _convert(kind: str, value: object) -> object:
    if value is UNKNOWN:
        return UNKNOWN
    try:
        if isinstance(value, str) and value.strip().lower() in {"true", "false"} and kind in {"int", "float"}:
            return int(value.strip().lower() == "true")
        if kind == "int":
            return int(value)  # type: ignore[arg-type]
        if kind == "float":
            return float(value)  # type: ignore[arg-type]
        if kind == "bool":
            return bool(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        return UNKNOWN
    return UNKNOWN


def _convert_by_helper_name(helper: str, raw: object) -> object:
    lowered = helper.lower()
    if "bool" in lowered or "flag" in lowered:
        return str(raw).strip().lower() in _TRUTHY if not isinstance(raw, bool) else raw
    if "int" in lowered:
        return _convert("int", raw)
    if "float" in lowered:
        return _convert("float", raw)
    return raw


def _compare(operator: cst.BaseCompOp, left: object, right: object) -> object:
    try:
        if isinstance(operator, cst.Equal):
            return left == right
        if isinstance(operator, cst.NotEqual):
            return left != right
        if isinstance(operator, cst.In):
            return left in right  # type: ignore[operator]
        if isinstance(operator, cst.NotIn):
            return left not in right  # type: ignore[operator]
        if isinstance(operator, cst.GreaterThan):
            return left > right  # type: ignore[operator]
        if isinstance(operator, cst.GreaterThanEqual):
            return left >= right  # type: ignore[operator]
        if isinstance(operator, cst.LessThan):
            return left < right  # type: ignore[operator]
        if isinstance(operator, cst.LessThanEqual):
            return left <= right  # type: ignore[operator]
        if isinstance(operator, cst.Is):
            return left is right
        if isinstance(operator, cst.IsNot):
            return left is not right
    except TypeError:
        return UNKNOWN
    return UNKNOWN
