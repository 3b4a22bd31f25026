"""Whether a mechanism a detector flagged runs under the configuration the submitter documented.

Why: most mechanisms (n-gram mixers, SLOT, within-word boosts) sit behind env switches whose
code default is off. One off under every documented configuration is ``info``; one turned on
names the setting and where it came from, so the reviewer can check the claim.

The names that carry a setting: any name or field assigned from an env read, and literal
module/class-level constants, by their last identifier in any case (``NGRAM_ON`` and
``args.ngram_on`` are one switch). Reach follows ``if``/early-``return``/``range(n)`` guards
and conditional expressions, then the call sites of the enclosing function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import libcst as cst

from harness.catalog import finding
from harness.check.mechanisms.hit import Hit
from harness.check.switches.evaluator import ENV_CALLS, Evaluator, Used, env_helpers
from harness.check.tree.index import ModuleIndex
from harness.check.tree.nodes import call_name, call_tail, dotted_name, last_identifier, number_value, string_value
from harness.findings import Finding
from harness.submission import Setting
from harness.unknown import UNKNOWN

_MAX_CALL_DEPTH = 4
State = tuple[bool | None, list[Used]]  # (True on / False off / None unknown, the switches that decided it)


@dataclass(frozen=True)
class Binding:
    """A setting-bearing name is bound to ``expr`` in ``index``."""

    expr: cst.BaseExpression
    index: ModuleIndex


class Configuration(Evaluator):
    """The switches of one submission as the mechanism detectors read them."""

    def __init__(
        self,
        indexes: list[ModuleIndex],
        settings: dict[str, Setting],
        alternatives: list[dict[str, Setting]] | None = None,
    ) -> None:
        super().__init__(settings, alternatives)
        self.indexes = indexes
        self.bindings: dict[str, list[Binding]] = {}
        self._reach_memo: dict[int, State] = {}
        self._calls_by_name: dict[str, list[tuple[ModuleIndex, cst.Call]]] = {}
        for index in indexes:
            self.add_helpers(index.parsed.module)
        self.env_helpers |= env_helpers(indexes)
        for index in indexes:
            self._collect_bindings(index)
            for call in index.calls:
                tail = call_tail(call)
                if tail:
                    self._calls_by_name.setdefault(tail, []).append((index, call))
                for argument in call.args:
                    # ``timed_eval("ngram", eval_val_ngram, h, ...)`` runs ``eval_val_ngram`` where
                    # the call to ``timed_eval`` runs, under that call's guards (#2121)
                    if isinstance(argument.value, cst.Name):
                        self._calls_by_name.setdefault(argument.value.value, []).append((index, call))

    def _collect_bindings(self, index: ModuleIndex) -> None:
        """Names bound from an env read anywhere, and literal module/class-level constants."""
        env_nodes: list[cst.CSTNode] = [
            c for c in index.calls if call_name(c) in ENV_CALLS or call_tail(c) in self.env_helpers
        ]
        env_nodes += [s for s in index.subscripts if dotted_name(s.value) in ("os.environ", "environ")]
        statements: dict[int, cst.Assign | cst.AnnAssign] = {}
        for node in env_nodes:
            for ancestor in index.ancestors(node):
                if isinstance(ancestor, (cst.Assign, cst.AnnAssign)):
                    statements[id(ancestor)] = ancestor
                    break
                if isinstance(ancestor, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
                    break
        for statement in index.assigns:
            if isinstance(statement, (cst.Assign, cst.AnnAssign)) and statement.value is not None:
                if _is_literal(statement.value) and index.enclosing_function(statement) is None:
                    statements[id(statement)] = statement
        for statement in statements.values():
            targets = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else [statement.target]
            for target in targets:
                key = last_identifier(target)
                if key is not None and statement.value is not None:
                    self.bindings.setdefault(key.lower(), []).append(Binding(statement.value, index))

    def names(self, node: cst.Name | cst.Attribute, dotted: str | None) -> list[cst.BaseExpression | None]:
        key = last_identifier(node)
        return [b.expr for b in self.bindings.get(key.lower(), [])] if key else []

    @contextmanager
    def under(self, settings: dict[str, Setting]) -> Iterator[None]:
        """Reach memos belong to one set of settings."""
        saved, self._reach_memo = self._reach_memo, {}
        try:
            with super().under(settings):
                yield
        finally:
            self._reach_memo = saved

    # ---- guards ---------------------------------------------------------------------
    def node_state(
        self, index: ModuleIndex, node: cst.CSTNode, depth: int = 0, visiting: frozenset[int] = frozenset()
    ) -> State:
        """Whether ``node`` runs, and the settings that decided it."""
        used: list[Used] = []
        local: bool | None = True
        child: cst.CSTNode = node
        for ancestor in index.ancestors(node):
            local = _and(local, self._guard_of(ancestor, child, used))
            if isinstance(ancestor, (cst.IndentedBlock, cst.Module)):
                local = _and(local, self._early_exit_guard(ancestor, child, used))
            if isinstance(ancestor, cst.FunctionDef):
                reach, reach_used = self._function_reach(ancestor, depth, visiting)
                used.extend(reach_used)
                return _and(local, reach), used
            child = ancestor
        return local, used

    def _truth(self, test: cst.BaseExpression, used: list[Used]) -> bool | None:
        value = self.value(test, used)
        return None if value is UNKNOWN else bool(value)

    def _guard_of(self, ancestor: cst.CSTNode, child: cst.CSTNode, used: list[Used]) -> bool | None:
        if isinstance(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test:
            # ``if args.ngram:`` / ``load_sidecar(p) if args.byte_sidecar else None``
            truth = self._truth(ancestor.test, used)
            return truth if truth is None or child is ancestor.body else not truth
        if isinstance(ancestor, cst.For) and child is ancestor.body:
            iterator = ancestor.iter
            if isinstance(iterator, cst.Call) and call_name(iterator) == "range" and len(iterator.args) == 1:
                count = self.value(iterator.args[0].value, used)
                if isinstance(count, (int, float)) and not isinstance(count, bool):
                    return count > 0
        return True

    def _early_exit_guard(
        self, block: cst.IndentedBlock | cst.Module, child: cst.CSTNode, used: list[Used]
    ) -> bool | None:
        """``if not cfg.enabled: return`` before ``child`` in the same block."""
        state: bool | None = True
        for statement in block.body:
            if statement is child:
                break
            if isinstance(statement, cst.If) and statement.orelse is None and _only_exits(statement.body):
                truth = self._truth(statement.test, used)
                state = _and(state, None if truth is None else not truth)
        return state

    def _function_reach(self, function: cst.FunctionDef, depth: int, visiting: frozenset[int]) -> State:
        """Whether any call site of ``function`` runs (memoized: ``forward`` has many call sites)."""
        if depth >= _MAX_CALL_DEPTH or id(function) in visiting:
            return None, []
        cached = self._reach_memo.get(id(function))
        if cached is None:
            inner = visiting | {id(function)}
            states: list[bool | None] = []
            used: list[Used] = []
            for index, call in self._calls_by_name.get(function.name.value, []):
                state, site_used = self.node_state(index, call, depth + 1, inner)
                states.append(state)
                used.extend(site_used)
            reach: bool | None = True if True in states else None
            if states and all(s is False for s in states):
                reach = False
            cached = self._reach_memo[id(function)] = (reach, used)
        return cached

    # ---- findings -------------------------------------------------------------------
    def finalize(self, hit: Hit) -> Finding:
        """A detector hit as a finding: ``not-run`` only when every documented run leaves it off."""
        state, used = self.first_documented_run(lambda: self._hit_state(hit), lambda s: s[0] is not False)
        when, message = hit.when, hit.message
        if state is False:
            when = "not-run"
            message += f" — not active in any documented configuration ({_describe(used, on=False)})"
        else:
            documented = [u for u in used if u[2] is not None]
            if documented:
                message += f" — enabled by {_describe(documented, on=True)}"
        return finding(hit.rule, hit.index.name, hit.index.line(hit.node), message, hit.path, when=when)

    def _hit_state(self, hit: Hit) -> State:
        state, used = self.node_state(hit.index, hit.node)
        for factor in hit.zero_factors:
            evaluation = self.evaluate(factor)
            if isinstance(evaluation.value, (int, float)) and evaluation.value == 0:
                state = False
            if evaluation.value is not UNKNOWN:
                used = used + evaluation.used
        return state, used


def _describe(used: list[Used], on: bool) -> str:
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
    return None if a is None or b is None else True


def _is_literal(expr: cst.BaseExpression) -> bool:
    """A constant the detectors may read at module or class level (``NGRAM_ALPHA = 0.0``)."""
    if string_value(expr) is not None or number_value(expr) is not None:
        return True
    if isinstance(expr, cst.Name):
        return expr.value in ("True", "False", "None")
    if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
        return all(_is_literal(element.value) for element in expr.elements)
    return False
