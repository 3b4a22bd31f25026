"""Expressions and calls in one function walk: how values become VAL, and what each call does
— a sink (backward, save/compress/quantize, calibration), a source (``load_validation_tokens``),
a container fill (``append``, ``all_gather``) or a call into the submission's own code, which
is analysed (memoized) and inlined at the call site. Apart from the statement walk (``taint``)
because this one knows the vocabulary of calls, that one the order of statements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import reduce

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.functions import FuncInfo
from harness.check.flow.model import Cond, EffectKind, Summary, Taint, merge
from harness.check.flow.scope import Scope, call_sites, literal_key
from harness.check.flow.scores import ScoreSinks
from harness.check.tree.nodes import call_tail
from harness.findings import Step

Analyze = Callable[[FuncInfo, dict[str, Taint], dict[str, str]], Summary | None]


class Calls:
    def __init__(self, scope: Scope, scores: ScoreSinks, analyze: Analyze) -> None:
        self.scope = scope
        self.scores = scores
        self.info, self.parsed, self.file = scope.info, scope.parsed, scope.file
        self.analyze = analyze  # the memoized analysis of a callee under its tainted parameters
        self.call_parts: dict[int, tuple[Taint | None, ...]] = {}  # id(call) -> per-element result
        self.aliases: dict[str, FuncInfo] = {}  # ``step = torch.compile(train_step)`` -> train_step
        self.call_fields: dict[int, dict[str, Taint]] = {}  # id(constructor call) -> fields its __init__ made VAL
        self.hooks_active = False  # forward hooks accumulating activation statistics are registered

    def expr(self, node: cst.CSTNode) -> Taint | None:
        if isinstance(node, (cst.Name, cst.Attribute)):
            dotted = N.dotted_name(node)
            if dotted is not None:
                return self.scope.lookup(dotted, node)
            return self.expr(node.value) if isinstance(node, cst.Attribute) else None
        if isinstance(node, cst.Call):
            return self._call(node)
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            text = N.string_value(node)
            if text is not None and N.is_val_literal(text):
                return self.scope.source(self.parsed.line_of(node), f"literal {text!r}")
            return self._adjacent_literals(node) if isinstance(node, cst.ConcatenatedString) else None
        if isinstance(node, cst.Arg):
            return self.expr(node.value)
        if isinstance(node, cst.Yield):
            # a generator of VAL batches hands them to its caller's loop like a return value
            value = self.expr(node.value) if node.value is not None else None
            if value is not None:
                self.scope.returned = merge(self.scope.returned, value)
            return None
        if isinstance(node, cst.Subscript):
            keyed = literal_key(node)
            if keyed is not None:
                return self.scope.lookup(keyed, node)
        if isinstance(node, _OPAQUE):
            return None
        if isinstance(node, cst.IfExp):
            return self._conditional_value(node)
        if isinstance(node, cst.NamedExpr):
            value = self.expr(node.value)
            self.scope.bind(node.target, value, node.value)
            return value
        if isinstance(node, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            # a comprehension's targets live in its own scope (Python 3): ``str(x) for x in
            # stats['docs']`` in a log line must not leave ``x`` holding VAL for the function's
            # later ``x`` (#1839's bundled quantizer)
            restore = self.scope.enter_comprehension(_comprehension_targets(node.for_in))
            try:
                taint = self._comp_for(node.for_in)
                if isinstance(node, cst.DictComp):
                    return merge(taint, merge(self.expr(node.key), self.expr(node.value)))
                return merge(taint, self.expr(node.elt))
            finally:
                restore()
        result: Taint | None = None
        if isinstance(node, cst.FormattedString):
            text = N.string_value(node) or ""
            if N.is_val_literal(text):
                result = self.scope.source(self.parsed.line_of(node), f"literal {text!r}")
        # a loop rather than reduce() over a generator: one frame per nesting level, not two
        for child in N.children(node):
            result = merge(result, self.expr(child))
        return result

    def _adjacent_literals(self, node: cst.ConcatenatedString) -> Taint | None:
        """The pieces of adjacent literals whose whole text is no VAL literal. libcst nests
        them to the right, one level per piece: a short chain is read piece by piece and
        suffix by suffix, recursively; a long one (a shim's payload split over thousands of
        lines) piece by piece in a loop, so it cannot exhaust the recursion limit."""
        pieces = 0
        current: cst.BaseExpression = node
        while isinstance(current, cst.ConcatenatedString) and pieces <= _SHORT_CHAIN:
            pieces += 1
            current = current.right
        if pieces <= _SHORT_CHAIN:
            return merge(self.expr(node.left), self.expr(node.right))
        result: Taint | None = None
        current = node
        while isinstance(current, cst.ConcatenatedString):
            result = merge(result, self.expr(current.left))
            current = current.right
        return merge(result, self.expr(current))

    def _conditional_value(self, node: cst.IfExp) -> Taint | None:
        """``a if test else b`` where only one side is VAL: VAL only when ``test`` says so."""
        test = self.expr(node.test)
        body, orelse = self.expr(node.body), self.expr(node.orelse)
        line = self.parsed.line_of(node)
        if body is not None and orelse is None:
            body = replace(body, conds=body.conds + (Cond(self.parsed, node.test, True, line),))
        elif orelse is not None and body is None:
            orelse = replace(orelse, conds=orelse.conds + (Cond(self.parsed, node.test, False, line),))
        return merge(merge(body, orelse), test)

    def _comp_for(self, comp: cst.CompFor) -> Taint | None:
        taint = self.expr(comp.iter)
        self.scope.bind(comp.target, taint, comp.iter)
        for condition in comp.ifs:
            self.expr(condition.test)
        if comp.inner_for_in is not None:
            taint = merge(taint, self._comp_for(comp.inner_for_in))
        return taint

    def _call(self, call: cst.Call) -> Taint | None:
        name = N.callee_name(call)
        method = N.last_part(name)
        line = self.parsed.line_of(call)
        receiver: Taint | None = None
        if isinstance(call.func, cst.Attribute):
            receiver = self.expr(call.func.value)
        elif not isinstance(call.func, cst.Name):
            receiver = self.expr(call.func)
        arg_taints = [self.expr(arg.value) for arg in call.args]
        args_taint = reduce(merge, arg_taints, None)
        call_refs = set(N.refs(call))
        owner = call.func.value if isinstance(call.func, cst.Attribute) else None  # of a method call

        if method == "backward" and owner is not None:
            self.scope.emit(
                EffectKind.UPDATE, line, self.scope.short(call), merge(receiver, args_taint), set(N.refs(owner))
            )
            return None
        if name in ("torch.autograd.grad", "autograd.grad"):
            self.scope.emit(EffectKind.UPDATE, line, f"{name}(…)", args_taint, call_refs)
            return args_taint
        if owner is not None and method in N.PARAM_WRITE_METHODS and args_taint is not None and _is_param_like(owner):
            note = f"in-place parameter write {self.scope.short(call)}"
            self.scope.emit(EffectKind.UPDATE, line, note, args_taint, call_refs)
            return None
        if N.CALIB_CALL.search(method) and args_taint is not None and not args_taint.via_calibration:
            self.scope.emit(EffectKind.CALIBRATION, line, f"quantization calibration {name}(…)", args_taint, call_refs)
            if self._is_artifact(call, name, method):
                self.scope.emit(EffectKind.ARTIFACT, line, f"{name}(…)", None, call_refs)
            return replace(args_taint, via_calibration=True)
        target = (
            self.aliases.get(name)
            or self._method_of_instance(call)
            or (self.scope.index.resolve(name, self.info) if name != "<expr>" else None)
        )
        if target is self.info:
            target = None
        artifact = self._is_artifact(call, name, method)
        if artifact and target is None:
            self.scope.emit(EffectKind.ARTIFACT, line, f"{name}(…)", args_taint, call_refs)
            return args_taint
        if method == "load_state_dict":
            self.scope.discard_lines.append(line)
        if method in ("state_dict", "deepcopy"):
            read_from = owner if owner is not None and method == "state_dict" else None
            if read_from is None and call.args:
                read_from = call.args[0].value
            weights = N.dotted_name(read_from) if read_from is not None else None
            if weights is not None:
                self.scope.state_reads.append((line, N.root_part(weights)))
        if method in ("register_forward_hook", "register_forward_pre_hook"):
            self._note_hook(call)
        if target is None and _is_collective_fill(name) and len(call.args) >= 2:
            rest = reduce(merge, arg_taints[1:], None)
            first = N.dotted_name(call.args[0].value)
            if rest is not None and first is not None:
                self.scope.taint_name(first, rest, line, f"{first} ← {name}(…)")
        pairs = list(zip(call.args, arg_taints))
        self._inline_function_arguments(pairs, call_refs, line)
        class_name = N.last_part(name)
        methods = (
            self.scope.index.class_methods(class_name, self.info) if target is None and name[:1].isalpha() else None
        )
        if methods is not None:
            # ``Trainer(h, model, loader, val_data)``: its ``__init__`` runs with the arguments and only the fields
            # it fills with VAL become VAL, not the instance (one keeping val_data to log still trains on train data)
            if "__init__" in methods:
                self._inline(methods["__init__"], pairs, True, None, call_refs, line, constructed=call)
            if class_name in self.scope.index.val_data_classes:
                return self.scope.source(line, f"{class_name}(…) (an instance holding loaded validation data)")
            return None
        if target is not None:
            bound_self = isinstance(call.func, cst.Attribute) and target.class_name is not None
            fields = self._receiver_fields(owner) if bound_self and owner is not None else None
            returned = self._inline(target, pairs, bound_self, receiver, call_refs, line, fields, call)
            if artifact:
                self.scope.emit(EffectKind.ARTIFACT, line, f"{name}(…)", args_taint, call_refs)
            if N.is_val_loader_call(method) and returned is None:
                returned = self.scope.source(line, f"{name}(…)")
            if (
                self.hooks_active
                and bound_self
                and args_taint is not None
                and receiver is None
                and not args_taint.via_calibration
            ):
                # ``model.forward_logits(val_rows)`` with Hessian hooks on its layers: the
                # submission's own forward method feeds the hooks just like ``model(x)`` (#728)
                self._hooked_forward(call, args_taint, call_refs, line)
                return replace(returned, via_calibration=True) if returned is not None else None
            return returned
        if N.is_val_loader_call(method):
            return merge(self.scope.source(line, f"{name}(…)"), args_taint)
        if owner is not None and method in N.MUTATOR_METHODS and args_taint is not None:
            holder = N.dotted_name(owner)
            if holder is not None:
                if (
                    method in ("add_", "index_add_")
                    or (method in ("append", "extend") and N.SCORE_LIST_NAME.search(N.last_part(holder)))
                ) and self.scores.is_score_target(holder):
                    self.scores.accumulated(holder, line, args_taint, call)
                first = self.scope.short(call.args[0].value) if call.args else ""
                self.scope.taint_name(holder, args_taint, line, f"{holder}.{method}({first})")
        if self.hooks_active and args_taint is not None and receiver is None and method not in N.MUTATOR_METHODS:
            self._hooked_forward(call, args_taint, call_refs, line)
            return replace(args_taint, via_calibration=True)
        return merge(receiver, args_taint)

    def _hooked_forward(self, call: cst.Call, args_taint: Taint, call_refs: set[str], line: int) -> None:
        """A forward pass while statistics hooks are registered: its inputs calibrate."""
        note = f"forward pass `{self.scope.short(call)}` with statistics hooks registered"
        self.scope.emit(EffectKind.CALIBRATION, line, note, args_taint, call_refs)

    def _receiver_fields(self, owner: cst.BaseExpression) -> dict[str, Taint]:
        """VAL fields of the object a method is called on: ``ttt.tokens`` for ``ttt.run()``."""
        if isinstance(owner, cst.Call):
            return self.call_fields.get(id(owner), {})
        holder = N.dotted_name(owner)
        return self.scope.fields_of(holder) if holder is not None else {}

    def _method_of_instance(self, call: cst.Call) -> FuncInfo | None:
        """``ttt.run(model)`` where ``ttt = PreQuantTTT(...)``, or ``PreQuantTTT(...).run(model)``:
        the class is known, so even a generic method name resolves."""
        if not isinstance(call.func, cst.Attribute):
            return None
        receiver = call.func.value
        if isinstance(receiver, cst.Name):
            class_name = self.scope.instances.get(receiver.value)
        else:
            class_name = N.dotted_name(receiver.func) if isinstance(receiver, cst.Call) else None
        methods = self.scope.index.class_methods(class_name, self.info) if class_name is not None else None
        return methods.get(call.func.attr.value) if methods else None

    def _is_artifact(self, call: cst.Call, name: str, method: str) -> bool:
        lowered = method.lower()
        if name in ("torch.save", "save_file", "safetensors.torch.save_file") or lowered == "save_file":
            return True
        if lowered in ("compress", "compress_stream") and isinstance(call.func, cst.Attribute):
            return bool(N.ARTIFACT_COMPRESS_ROOT.search(self.parsed.flat_code(call.func.value).lower()))
        # ``deserialize``/``dequantize``/``load_quantized`` read an artifact back, they do not write one
        return bool(N.ARTIFACT_QUANT_CALL.search(lowered)) and not any(w in lowered for w in _READS_BACK)

    def _note_hook(self, call: cst.Call) -> None:
        for arg in call.args:
            if isinstance(arg.value, cst.Lambda):
                # minified ``lambda mo, i, o, n=n: H.__setitem__(n, H.get(n, 0) + i[0].T @ i[0])``
                self.hooks_active |= N.contains_activation_statistic(arg.value.body)
                continue
            # the hook function itself, or the factory that makes it
            named = N.dotted_name(arg.value.func if isinstance(arg.value, cst.Call) else arg.value)
            function = self.scope.index.resolve(named, self.info) if named else None
            if function is not None and _accumulates_statistics(function):
                self.hooks_active = True

    def _inline_function_arguments(
        self, pairs: list[tuple[cst.Arg, Taint | None]], call_refs: set[str], line: int
    ) -> None:
        """``timed_eval("label", eval_val, h, device, val_data, model)``: a submission function
        passed as an argument is called by the wrapper with the arguments that follow it."""
        for position, (arg, _) in enumerate(pairs):
            referenced = N.dotted_name(arg.value) if arg.keyword is None and not arg.star else None
            function = self.scope.index.resolve(referenced, self.info) if referenced is not None else None
            if function is not None and function is not self.info:
                rest = [(a, t) for a, t in pairs[position + 1 :] if not a.star]
                self._inline(function, rest, False, None, call_refs, line)

    def _inline(
        self,
        target: FuncInfo,
        pairs: list[tuple[cst.Arg, Taint | None]],
        bound_self: bool,
        receiver: Taint | None,
        call_refs: set[str],
        line: int,
        receiver_fields: dict[str, Taint] | None = None,
        call: cst.Call | None = None,
        constructed: cst.Call | None = None,
    ) -> Taint | None:
        """The effects of ``target`` called here, and what the call returns; ``call`` keeps its
        per-element result (``train, val = load()``), ``constructed`` the fields its ``__init__`` filled."""
        params = list(target.params)
        seed: dict[str, Taint] = {}
        classes: dict[str, str] = {}
        if bound_self and params:
            if receiver is not None:
                seed[params[0]] = receiver
            seed.update((f"{params[0]}.{field}", taint) for field, taint in (receiver_fields or {}).items())
            params = params[1:]
        arg_names: dict[str, str] = {}
        arg_exprs: list[tuple[str, cst.BaseExpression]] = []
        position = 0
        for arg, taint in pairs:
            if arg.star:
                continue
            if arg.keyword is not None:
                param = arg.keyword.value
            elif position < len(params):
                param = params[position]
                position += 1
            else:
                continue
            arg_exprs.append((param, arg.value))
            dotted = N.dotted_name(arg.value)
            if dotted is not None:
                arg_names[param] = dotted
                if param in target.params:
                    # an object handed over keeps its VAL fields and its class in the callee:
                    # ``collect_hessians(model, calib_loader)`` then ``loader.next_batch()`` (#728)
                    for field_name, field_taint in self.scope.fields_of(dotted).items():
                        seed.setdefault(f"{param}.{field_name}", field_taint)
                    if dotted in self.scope.instances:
                        classes[param] = self.scope.instances[dotted]
            if taint is not None and param in target.params:
                seed[param] = taint.extend(Step(target.file, target.line, f"enters {target.display}({param})"))
        if target.parent is not None:
            for key, value in self.scope.taint.items():
                if N.root_part(key) not in target.params:
                    seed.setdefault(key, value)
        summary = self.analyze(target, seed, classes)
        if summary is None:
            return reduce(merge, (taint for _, taint in pairs), receiver)
        # a summary is memoized by *which* names are VAL, so conditions carried by this call's
        # values (``pattern`` VAL only when TRAIN_ON_VAL is on) are put back on what it yields
        carried = _shared_conds(list(seed.values()))
        if constructed is not None and summary.self_fields:
            self.call_fields[id(constructed)] = {k: with_conds(v, carried) for k, v in summary.self_fields.items()}
        incoming = {c for value in seed.values() for c in value.conds}
        arg_exprs += _unpassed_defaults(target, {param for param, _ in arg_exprs}, bound_self)
        scope = tuple(arg_exprs)

        def lift(conds: tuple[Cond, ...]) -> tuple[Cond, ...]:
            # a condition written in the callee reads its parameters: record this call's
            # arguments for it; one that came in with an argument is already in caller terms
            return tuple(c if c in incoming else replace(c, scope=c.scope + (scope,)) for c in conds)

        if self.scope.recording:
            prefix = next(call_sites)
            frames = self.scope.frames(call_refs | target.free_names)
            for effect in summary.effects:
                extra = tuple(c for c in carried if c not in effect.conds) if effect.tainted else ()
                lifted = replace(
                    effect,
                    loops=frames + tuple(replace(f, uid=(prefix,) + f.uid) for f in effect.loops),
                    conds=tuple(self.scope.conds) + lift(effect.conds) + extra,
                    functions=(self.info.display,) + effect.functions,
                    function_ids=(self.info.uid,) + effect.function_ids,
                    calls=(Step(self.file, line, f"{target.display}(…)"),) + effect.calls,
                    call_names=(frozenset(call_refs),) + effect.call_names,
                    warmup=effect.warmup or self.scope.warm_depth > 0,
                )
                self.scope.append(lifted, line, call_refs)

        def out(taint: Taint, step: Step) -> Taint:
            lifted = taint.extend(step)
            if lifted.conds:
                lifted = replace(lifted, conds=lift(lifted.conds))
            return with_conds(lifted, carried)

        for param, taint in summary.tainted_params.items():
            if param in arg_names:
                filled = out(taint, Step(self.file, line, f"filled by {target.display}"))
                self.scope.taint_name(arg_names[param], filled, line, f"{arg_names[param]} filled by {target.display}")
        step = Step(self.file, line, f"result of {target.display}(…)")
        if summary.returned_parts is not None and call is not None:
            self.call_parts[id(call)] = tuple(
                out(part, step) if part is not None else None for part in summary.returned_parts
            )
        return out(summary.returned, step) if summary.returned is not None else None


# Adjacent literals up to this many pieces are read recursively (see _adjacent_literals).
_SHORT_CHAIN = 100
_READS_BACK = ("dequant", "deserial", "unpack", "load")
_OPAQUE = (cst.Lambda, cst.Integer, cst.Float, cst.Imaginary, cst.Ellipsis)
_WRAPPERS = frozenset({"compile", "jit", "script", "trace", "checkpoint_wrapper", "no_grad", "inference_mode"})


def wrapped_function(value: cst.BaseExpression, resolve: Callable[[str], FuncInfo | None]) -> FuncInfo | None:
    """``torch.compile(train_step)`` or a bare ``train_step``: the submission function a new name
    will call, so effects are found where the alias is called rather than where it is made."""
    if isinstance(value, cst.Name):
        return resolve(value.value)
    if isinstance(value, cst.Call) and value.args and call_tail(value) in _WRAPPERS:
        inner = N.dotted_name(value.args[0].value)
        return resolve(inner) if inner is not None else None
    return None


def _comprehension_targets(comp: cst.CompFor) -> set[str]:
    names: set[str] = set()
    current: cst.CompFor | None = comp
    while current is not None:
        names.update(N.assigned_names(current.target))
        current = current.inner_for_in
    return names


def _unpassed_defaults(target: FuncInfo, passed: set[str], bound_self: bool) -> list[tuple[str, cst.BaseExpression]]:
    """``split="train"`` when the call leaves it out: a condition on ``split`` reads the default."""
    if target.node is None:
        return []
    params = target.node.params
    ordered = list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
    if bound_self and ordered:
        ordered = ordered[1:]
    return [(p.name.value, p.default) for p in ordered if p.default is not None and p.name.value not in passed]


def _shared_conds(taints: list[Taint]) -> tuple[Cond, ...]:
    """Conditions every VAL value handed to a call carries (none if one is VAL unconditionally)."""
    if not taints or any(not t.conds for t in taints):
        return ()
    shared = taints[0].conds
    for taint in taints[1:]:
        shared = tuple(c for c in shared if c in taint.conds)
    return shared


def with_conds(taint: Taint, conds: tuple[Cond, ...]) -> Taint:
    missing = tuple(c for c in conds if c not in taint.conds)
    return replace(taint, conds=taint.conds + missing) if missing else taint


def _is_collective_fill(name: str) -> bool:
    """``dist.all_gather(out, x)`` / ``all_gather_object(out, obj)`` fill their first argument;
    so does ``np.add.at(counts, keys, 1)`` (a count table built from VAL keys)."""
    method = N.last_part(name)
    if method == "at" and name.count(".") >= 2 and N.root_part(name) in ("np", "numpy", "cp"):
        return True
    if not N.COLLECTIVE_FILL.match(method):
        return False
    return method.startswith("all_") or N.root_part(name) in ("dist", "torch", "distributed")


def _is_param_like(node: cst.BaseExpression) -> bool:
    text = N.dotted_name(node) or ""
    parts = set(text.split("."))
    return bool(parts & {"data", "weight", "bias", "param", "p", "params"}) or "param" in text


def _accumulates_statistics(function: FuncInfo) -> bool:
    if function.has_matmul_accumulation or function.stores_activation_statistic:
        return True
    return any(_accumulates_statistics(inner) for inner in function.nested.values())
