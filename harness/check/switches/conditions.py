"""Whether a data-flow effect runs: its conditions evaluated under the configuration that ran.

Names are bound as Python binds them: every assignment at any level (``run_ttt =
h.ttt_enabled`` is followed), loop variables and parameters as unknown, and fields (class-body
names, ``obj.x = …``) apart from plain names, so a parameter ``ttt_enabled`` does not blur
``args.ttt_enabled``. A name bound several ways with different values is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.model import Cond
from harness.check.parse import ParsedSource
from harness.check.switches.evaluator import Evaluator, Used, env_helpers
from harness.check.tree.children import walk
from harness.check.tree.index import index_module
from harness.submission import Setting
from harness.unknown import UNKNOWN


@dataclass
class Outcome:
    """``runs`` is False when some condition is false; ``enabled_by``: documented settings that made them true."""

    runs: bool
    disabled_by: str = ""
    enabled_by: list[Setting] = field(default_factory=list)


class Switches(Evaluator):
    """The switches of one submission as the data-flow family reads them."""

    def __init__(
        self,
        parsed_sources: list[ParsedSource],
        settings: dict[str, Setting],
        alternatives: list[dict[str, Setting]] | None = None,
    ) -> None:
        super().__init__(settings, alternatives)
        self.bindings: dict[str, list[cst.BaseExpression | None]] = {}
        for parsed in parsed_sources:
            collector = _BindingCollector()
            collector.walk(parsed.module)
            for name, value in collector.found:
                self.bindings.setdefault(name, []).append(value)
            self.add_helpers(parsed.module)
        self.env_helpers |= env_helpers(index_module(parsed) for parsed in parsed_sources)

    def names(self, node: cst.Name | cst.Attribute, dotted: str | None) -> list[cst.BaseExpression | None]:
        if dotted is None:
            return []
        return self.bindings.get(("." if "." in dotted else "") + N.last_part(dotted), [])

    def outcome(self, conds: tuple[Cond, ...]) -> Outcome:
        return self.first_documented_run(
            lambda: self._outcome(conds),
            lambda outcome: outcome.runs,
            lambda outcome: outcome.runs and bool(outcome.enabled_by),
        )

    def _outcome(self, conds: tuple[Cond, ...]) -> Outcome:
        enabled: list[Setting] = []
        for cond in conds:
            used: list[Used] = []
            result = self.value_in(cond.scope, cond.expr, used, 0)
            if result is UNKNOWN:
                continue
            truth = (isinstance(result, (int, float)) and result > 0) if cond.range_count else bool(result)
            documented = sorted({s.name: s for _, _, s in used if s is not None}.values(), key=lambda s: s.name)
            if truth != cond.want:
                return Outcome(runs=False, disabled_by=_describe(cond, documented))
            enabled.extend(s for s in documented if s not in enabled)
        return Outcome(runs=True, enabled_by=enabled)


def _describe(cond: Cond, documented: list[Setting]) -> str:
    code = cond.parsed.flat_code(cond.expr)
    where = f"{cond.parsed.source.display_name}:{cond.line}"
    state = "false" if cond.want else "true"  # the path needs the opposite
    if documented:
        origin = ", ".join(f"{s.name}={s.value} in {s.file}:{s.line}" for s in documented)
        return f"`{code}` at {where} is {state} with {origin}"
    return f"`{code}` at {where} is {state} with the code defaults (no documented run sets it)"


class _BindingCollector:
    """Every binding of a name that a condition could read (see the module docstring)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, cst.BaseExpression | None]] = []

    def walk(self, module: cst.Module) -> None:
        # exact-type tests: isinstance against libcst's ABC-based classes is a Python call each,
        # and this walk visits every node of every source
        stack: list[tuple[cst.CSTNode, bool]] = [(module, False)]
        while stack:
            node, in_class = stack.pop()
            if type(node) is cst.Assign:
                self._record([t.target for t in node.targets], node.value, in_class)
            elif type(node) is cst.AnnAssign:
                if node.value is not None:
                    self._record([node.target], node.value, in_class)
            elif type(node) is cst.For or type(node) is cst.CompFor:
                self._unknown(node.target)
            elif type(node) is cst.NamedExpr:
                self._record([node.target], node.value, False)
            elif type(node) is cst.Param:
                self.found.append((node.name.value, None))
            elif type(node) is cst.ClassDef:
                in_class = True
            elif type(node) is cst.FunctionDef:
                in_class = False
            elif _is_expression_type(type(node)) and type(node) is not cst.Lambda and not _binds(node):
                continue
            stack.extend((child, in_class) for child in N.children(node))

    def _record(self, targets: list[cst.BaseExpression], value: cst.BaseExpression, in_class: bool) -> None:
        for target in targets:
            dotted = N.dotted_name(target)
            if dotted is None:
                self._unknown(target)
                continue
            if isinstance(value, cst.Name) and value.value == N.last_part(dotted):
                continue  # ``self.ttt_enabled = ttt_enabled`` adds nothing
            is_field = in_class or "." in dotted
            self.found.append((("." if is_field else "") + N.last_part(dotted), value))

    def _unknown(self, target: cst.CSTNode) -> None:
        for name in N.assigned_names(target):
            self.found.append((("." if "." in name else "") + N.last_part(name), None))


def _binds(node: cst.CSTNode) -> bool:
    """Whether an expression binds a name (only walrus and comprehensions do)."""
    return any(type(n) is cst.NamedExpr or type(n) is cst.CompFor for n in walk(node))


_EXPRESSION_TYPES: dict[type, bool] = {}


def _is_expression_type(kind: type) -> bool:
    known = _EXPRESSION_TYPES.get(kind)
    if known is None:
        known = _EXPRESSION_TYPES[kind] = issubclass(kind, cst.BaseExpression)
    return known
