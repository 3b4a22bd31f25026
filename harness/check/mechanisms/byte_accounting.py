"""PG204: non-canonical bits-per-byte accounting.

Why: BPB divides the total NLL (in bits) by the original UTF-8 bytes of the scored text.
Every shortcut shrinks or inflates that denominator: a hard-coded bytes-per-token or byte
total (#2009 fixed ``BYTES_PER_TOKEN``), byte-fallback pieces counted by the 3-byte
replacement character (#1271 Scylla), the ``▁`` marker counted as 3 bytes instead of one
space that disappears after a boundary (issue #897), a denominator that is a token count,
or bytes of case-transformed text instead of the raw-byte sidecar (cocohearts #2138,
#2071). Legal: ``build_sentencepiece_luts``-style base bytes + leading-space flag +
boundary flag, and the ``fineweb_val_bytes_*`` sidecar of lossless tokenizers (#1729).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import libcst as cst

from harness.check.switches.reach import Configuration
from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import (
    assigned_value,
    call_name,
    call_tail,
    dotted_name,
    literal_text,
    number_value,
    strings_in,
    target_names,
)
from harness.check.words import any_word, first_word

from .byte_tables import BYTE_NAME, byte_hit, find_lut_problems, find_missing_boundary_rule, find_shipped_byte_table
from .hit import Hit, step
from .imports import run_at_evaluation
from .targets import value_names

BPB_NAME = re.compile(r"bpb|bits_per_byte", re.IGNORECASE)
_LN2_MARKERS = re.compile(r"log\(2|log2|ln2|ln_2|LN2|LOG2|0\.693|1\.44269", re.IGNORECASE)
# CaseOps's private-use case markers (U+E001–U+E004) name the transform too
_CASEOPS = re.compile("caseops|case_ops|lossless_caps|casefold_ops|[\ue001-\ue004]", re.IGNORECASE)
_SIDECAR = re.compile(r"fineweb_val_bytes|byte_sidecar|bytes_sidecar|val_bytes|raw_bytes|sidecar", re.IGNORECASE)
# A training-time estimate (``train_bpb``), not the score; ``train`` no longer matches constrain.
_TRAIN_ONLY = any_word("(train|pretrain|retrain)*", "*train")
_HARMLESS = (0.0, 1.0, 2.0, math.log(2), 1 / math.log(2))
_BPB_LABEL = re.compile(r"val_bpb[:=]\s*$")
_ENV_READS = {"get", "getenv"}
_LOSS_NAME = any_word("*(loss|nll)*", "(bits|nats)*", "*(bits|nats)")
# A token count (``n_tokens``, ``tok_count``, ``seqlen``); ``len`` no longer matches blend/filename.
_TOKEN_NAME = any_word("(tok|count|num|len)*", "*(toks?|tokens?|counts?|num|lens?|lengths?)", "*numel*")
_TOKEN_NAME |= first_word("n")
_NOT_DATA = {"math", "np", "numpy", "torch", "float", "int", "round", "max", "min", "len", "sum", "abs"}
_PATH_BUILDERS = frozenset({"join", "get", "getenv", "Path", "str", "format", "replace", "print", "log", "log0"})
_SIDECAR_PATH = re.compile(r"fineweb_val_bytes|val_bytes|(bytes|sidecar)_(files?|path|pattern|dir)", re.IGNORECASE)
Formula = tuple[cst.CSTNode, cst.BaseExpression]  # the statement (or ``return``) and the expression it computes


def _suspicious_value(value: float | int, is_integer: bool) -> bool:
    """A literal that can only be a bytes-per-token ratio or a fixed byte total."""
    if abs(value) < 1e-3 or any(abs(value - h) < 1e-3 for h in _HARMLESS):
        return False
    return not (is_integer and abs(value) < 1_000_000 and value not in (3, 4, 5))


def _suspicious_number(node: cst.CSTNode) -> float | None:
    value = number_value(node)
    if value is None or isinstance(node, cst.UnaryOperation):
        return None
    return float(value) if _suspicious_value(value, isinstance(node, cst.Integer)) else None


def _bpb_statements(index: ModuleIndex) -> list[tuple[cst.CSTNode, cst.BaseExpression, bool]]:
    """(statement, formula, named) triples that compute (not just pass along) a value named
    ``*bpb*`` (named), or — in minified code — the value printed under a ``val_bpb:`` label."""
    found: list[tuple[cst.CSTNode, cst.BaseExpression | None, bool]] = []
    for statement in index.assigns:
        names = target_names(statement)
        if any(BPB_NAME.search(n) for n in names) and not any(_TRAIN_ONLY.search(n) for n in names):
            found.append((statement, assigned_value(statement), True))
    found += [(statement, value, False) for statement, value in _printed_bpb_formulas(index)]
    computed: dict[int, tuple[cst.CSTNode, cst.BaseExpression, bool]] = {}
    for statement, value, named in found:
        if isinstance(value, (cst.BinaryOperation, cst.UnaryOperation)):
            computed.setdefault(id(statement), (statement, value, named))
    return list(computed.values())


def _printed_bpb_formulas(index: ModuleIndex) -> list[Formula]:
    """Follow ``print(f"... val_bpb:{vb:.8f}")`` back to the formula: ``vb`` bound locally, or
    unpacked from ``vl, vb = ev(...)`` and then the matching element of ``ev``'s return
    (one level). Minifiers rename ``val_bpb`` but keep the log label the score is read from."""
    formulas: list[Formula] = []
    for node in (n for n in index.all_nodes() if isinstance(n, cst.FormattedString)):
        label = ""
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                label = part.value
            elif isinstance(part, cst.FormattedStringExpression):
                if _BPB_LABEL.search(label) and isinstance(part.expression, cst.Name):
                    formulas += _formulas_of(index, part.expression.value, index.enclosing_function(node))
                label = ""
    return formulas


def _formulas_of(index: ModuleIndex, name: str, scope: cst.FunctionDef | None, depth: int = 0) -> list[Formula]:
    found: list[Formula] = []
    container = scope if scope is not None else index.parsed.module
    for statement in nodes_within(index.assigns, container, index):
        if index.enclosing_function(statement) is not scope or not isinstance(statement, cst.Assign):
            continue
        for target in statement.targets:
            node = target.target
            if isinstance(node, cst.Name) and node.value == name:
                found.append((statement, statement.value))
            elif isinstance(node, cst.Tuple) and depth == 0 and isinstance(statement.value, cst.Call):
                names = [e.value.value if isinstance(e.value, cst.Name) else None for e in node.elements]
                if name in names:
                    found += _returned_formulas(index, call_tail(statement.value), names.index(name))
    return found


def _returned_formulas(index: ModuleIndex, function_name: str, position: int) -> list[Formula]:
    found: list[Formula] = []
    for function in index.functions_named(function_name):
        for node in walk(function.body):
            if not isinstance(node, cst.Return) or not isinstance(node.value, cst.Tuple):
                continue
            if index.enclosing_function(node) is not function or len(node.value.elements) <= position:
                continue
            element = node.value.elements[position].value
            while isinstance(element, cst.Call) and call_tail(element) in {"float", "item"} and len(element.args) == 1:
                element = element.args[0].value  # ``return float(vl), float(vl / math.log(2))``
            if isinstance(element, cst.Name):
                found += _formulas_of(index, element.value, function, depth=1)
            else:
                found.append((node, element))
    return found


def _constant_names(index: ModuleIndex, scope: cst.CSTNode) -> dict[str, tuple[cst.CSTNode, float]]:
    """Module-level and same-function names bound to a suspicious literal (also as an env
    default: ``BYTES_PER_TOKEN = float(os.environ.get("BPT", "3.6"))``)."""
    constants: dict[str, tuple[cst.CSTNode, float]] = {}
    for statement in index.assigns:
        value = assigned_value(statement)
        if value is None or isinstance(statement, cst.AugAssign):
            continue
        owner = index.enclosing_function(statement)
        if owner is not None and owner is not scope:
            continue
        number = _suspicious_number(value)
        if number is None and isinstance(value, cst.Call) and call_tail(value) in {"float", "int"}:
            for text in strings_in(value):
                if re.fullmatch(r"\s*\d[\d_]*(\.\d*)?\s*", text):
                    parsed = float(text.replace("_", ""))
                    if _suspicious_value(parsed, "." not in text):
                        number = parsed
            if number is None:
                number = _env_default_number(value)
        if number is not None:
            constants.update((name, (statement, number)) for name in target_names(statement))
    return constants


def _env_default_number(value: cst.Call) -> float | None:
    """The numeric default of an env read (``float(os.environ.get("BYTES_PER_TOKEN", 2.436))``,
    the #2009 shape), the same fixed constant as the string ``"2.436"``; no other number counts."""
    for node in walk(value):
        if not isinstance(node, cst.Call) or call_tail(node) not in _ENV_READS or not node.args:
            continue
        if not strings_in(node.args[0].value):
            continue  # ``d.get(k, 0.5)`` on a dict keyed by a variable is no env read
        default = next((a.value for a in node.args if a.keyword is not None and a.keyword.value == "default"), None)
        if default is None and len(node.args) > 1 and node.args[1].keyword is None:
            default = node.args[1].value
        number = _suspicious_number(default) if default is not None else None
        if number is not None:
            return number
    return None


def _byte_derived(index: ModuleIndex, scope: cst.CSTNode) -> set[str]:
    """Names in ``scope`` holding byte counts: named so, computed from ``.encode()``
    lengths or ``nbytes``, or from other such names."""
    names: set[str] = set()
    assigns = nodes_within(index.assigns, scope, index)
    for _ in range(4):
        for statement in assigns:
            value = assigned_value(statement)
            if value is not None and _counts_bytes(value, names | {"encode"}):
                names.update(target_names(statement))
    return names


def _counts_bytes(value: cst.CSTNode, byte_names: set[str]) -> bool:
    """``value`` reads one of ``byte_names``, or a name, member or string saying "byte"."""
    mentioned = {n.value for n in value_names(value)} | set(_member_names(value))
    return (
        bool(mentioned & byte_names)
        or any(BYTE_NAME.search(n) for n in mentioned)
        or any(BYTE_NAME.search(text) for text in strings_in(value))
    )


def _table_sums(index: ModuleIndex, scope: cst.CSTNode) -> set[str]:
    """Running totals of a per-token table lookup (``b += lut[w[1:]].sum()``): a sum of
    per-token values looked up by the scored tokens is a byte count whatever the table is
    called (minified code; a token count adds ``numel()``/``len``, not table entries)."""
    totals: set[str] = set()
    for statement in nodes_within(index.assigns, scope, index):
        if isinstance(statement, cst.AugAssign) and isinstance(statement.operator, cst.AddAssign):
            if any(_indexed_by_tokens(n) for n in walk(statement.value)):
                totals.update(target_names(statement))
    return totals


def _indexed_by_tokens(node: cst.CSTNode) -> bool:
    """``lut[w[1:]]``, ``lut[y]``: a table indexed by a tensor of tokens, not by a literal key."""
    if not isinstance(node, cst.Subscript) or not isinstance(node.value, cst.Name) or len(node.slice) != 1:
        return False
    key = node.slice[0].slice.value if isinstance(node.slice[0].slice, cst.Index) else None
    if isinstance(key, (cst.Name, cst.Attribute)):
        return not _LOSS_NAME.search(dotted_name(key) or "")
    return isinstance(key, cst.Subscript)


def _all_names_known(index: ModuleIndex, scope: cst.CSTNode, value: cst.CSTNode) -> bool:
    """Every data name in the formula is a loss, a token count, or computed here: a parameter
    passed in from elsewhere (``tokens_per_byte_ratio``) might be a byte ratio."""
    known = _NOT_DATA | {n for s in nodes_within(index.assigns, scope, index) for n in target_names(s)}
    calls = {id(n.func) for n in walk(value) if isinstance(n, cst.Call)}
    return all(
        id(name) in calls or name.value in known or _LOSS_NAME.search(name.value) or _TOKEN_NAME.search(name.value)
        for name in value_names(value)
    )


def _member_names(expr: cst.CSTNode) -> list[str]:
    """Attribute members read in ``expr`` (``args.bytes_per_token`` → ``bytes_per_token``)."""
    return [n.attr.value for n in walk(expr) if isinstance(n, cst.Attribute)]


def _accumulators(index: ModuleIndex, scope: cst.CSTNode, value: cst.CSTNode) -> int:
    """Running totals (``x += ...``, or slots of one list ``tot[2] += …``) the formula depends
    on through local assignments."""
    assigns = nodes_within(index.assigns, scope, index)
    updates = [s for s in assigns if isinstance(s, cst.AugAssign)]
    totals = {n for s in updates for n in target_names(s)} | {_slot(s.target) for s in updates}
    pending = _read_totals(value)
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        for statement in assigns:
            bound = assigned_value(statement)
            if bound is not None and not isinstance(statement, cst.AugAssign) and name in target_names(statement):
                pending += _read_totals(bound)
    return len(reached & totals)


def _read_totals(expr: cst.CSTNode) -> list[str]:
    """Names an expression reads, and the literal slots it reads (``tot[2]``)."""
    slots = [slot for n in walk(expr) if isinstance(n, cst.Subscript) and (slot := _slot(n)) is not None]
    return [n.value for n in value_names(expr)] + slots


def _slot(node: cst.CSTNode) -> str | None:
    """``tot[2]`` → "tot[2]": one slot of a list of running totals (three of them in one list
    are the loss, token and byte sums of phased or minified evaluations)."""
    if not isinstance(node, cst.Subscript) or not isinstance(node.value, cst.Name) or len(node.slice) != 1:
        return None
    element = node.slice[0].slice
    if isinstance(element, cst.Index) and isinstance(element.value, cst.Integer):
        return f"{node.value.value}[{element.value.value}]"
    return None


def find_hardcoded_ratio(index: ModuleIndex) -> list[Hit]:
    hits: list[Hit] = []
    for statement, value, named_bpb in _bpb_statements(index):
        scope = index.enclosing_function(statement) or index.parsed.module
        constants = _constant_names(index, scope)
        factors = [  # operands of ``*`` and ``/``, where a bytes-per-token factor or byte total would sit
            side
            for node in walk(value)
            if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Multiply, cst.Divide))
            for side in (node.left, node.right)
        ]
        literal = next((n for n in factors if _suspicious_number(n) is not None), None)
        named = next((n.value for f in factors for n in value_names(f) if n.value in constants), None)
        if named is None:  # ``args.bytes_per_token`` read from a Hyperparameters field (#2009)
            named = next((a for f in factors for a in _member_names(f) if a in constants), None)
        mentions_bits = _LN2_MARKERS.search(index.code(value, 10_000)) is not None
        shown = index.code(literal) if literal is not None else named
        if shown is not None and (mentions_bits or any(_LOSS_NAME.search(n.value) for n in value_names(value))):
            path = [step(index, statement, f"bytes taken from the constant {shown}")]
            if named is not None:
                path.insert(0, step(index, constants[named][0], f"{named} = {constants[named][1]:g} fixed in code"))
            message = (
                f"`{index.code(statement, 80)}` uses the fixed number {shown} as bytes-per-token or byte total "
                "instead of counting the original bytes of the scored tokens"
            )
            hits.append(byte_hit(index, statement, message, *path))
            continue
        if not named_bpb and _accumulators(index, scope, value) >= 3:
            continue  # minified: a third running total beside loss and token count is the byte count
        if (
            mentions_bits
            and not _counts_bytes(value, _byte_derived(index, scope) | _table_sums(index, scope))
            and _all_names_known(index, scope, value)
            and not _in_training_loop(index, statement)
        ):
            message = (
                f"`{index.code(statement, 80)}` converts the loss to bits without dividing by a byte count: "
                "the reported val_bpb is bits per token, not per original byte"
            )
            hits.append(byte_hit(index, statement, message, step(index, statement, "no byte count in the BPB formula")))
    return hits


def find_transformed_text_bytes(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    """A case-transform tokenizer (CaseOps) with no raw-byte sidecar read in the configuration
    that ran: a sidecar loader switched off by its code default and left off by the README
    (``BYTE_SIDECAR="0"``) leaves the denominator on the transformed text (#2138)."""
    caseops: tuple[ModuleIndex, cst.CSTNode] | None = None
    mentioned = False
    loads: list[bool | None] = []  # whether each sidecar read runs (None: cannot tell)
    at_eval = run_at_evaluation(indexes)
    for index in indexes:
        if not _CASEOPS.search(index.parsed.source.text) and not _SIDECAR.search(index.parsed.source.text):
            continue
        for node in index.all_nodes():
            if isinstance(node, cst.Call) and _reads_sidecar(node):
                loads.append(configuration.node_state(index, node)[0])
            text = node.value if isinstance(node, cst.Name) else None
            if text is None and isinstance(node, cst.SimpleString):
                text = literal_text(node)
            if text is None:
                continue
            mentioned = mentioned or _SIDECAR.search(text) is not None
            if caseops is None and id(index) in at_eval and _CASEOPS.search(text):
                caseops = (index, node)
    if caseops is None or (mentioned and (not loads or any(state is not False for state in loads))):
        return []
    index, node = caseops
    message = (
        "the text is case-transformed before tokenizing but no raw-byte sidecar (`fineweb_val_bytes_*`) "
        "is read, so bytes are counted on the transformed text rather than the original bytes"
    )
    where = step(index, node, "case transform of the scored text")
    return [byte_hit(index, index.enclosing_statement(node), message, where)]


def _reads_sidecar(call: cst.Call) -> bool:
    """``load_byte_sidecar(p)``, ``glob(args.val_bytes_files)``: a call named for the sidecar,
    or handed its path — not one that only builds the path or reads the switch."""
    if _SIDECAR.search(call_name(call)):
        return True
    if call_tail(call) in _PATH_BUILDERS:
        return False  # ``os.path.join(data_path, "fineweb_val_bytes_*.bin")`` only names it
    texts = [
        literal_text(a.value) if isinstance(a.value, cst.SimpleString) else dotted_name(a.value) for a in call.args
    ]
    return any(text is not None and _SIDECAR_PATH.search(text.rsplit(".", 1)[-1]) for text in texts)


def find_byte_accounting(indexes: list[ModuleIndex], configuration: Configuration) -> list[Hit]:
    hits: list[Hit] = []
    at_eval = run_at_evaluation(indexes)
    for index in indexes:
        hits += find_hardcoded_ratio(index)
        hits += find_shipped_byte_table(index)
        tables = find_lut_problems(index) + find_missing_boundary_rule(index)
        if id(index) not in at_eval:
            # a table in a script the entry never imports (a tokenizer-building or analysis tool,
            # a data-preparation step) is for the reviewer to trace (#1578's pipeline scripts)
            note = (
                f" (in {index.name}, which the entry script does not import: "
                "check whether this table reaches the reported val_bpb)"
            )
            tables = [replace(hit, when="outside-the-run", message=hit.message + note) for hit in tables]
        hits += tables
    hits += find_transformed_text_bytes(indexes, configuration)
    return hits


def _in_training_loop(index: ModuleIndex, statement: cst.CSTNode) -> bool:
    """A bits-per-token figure inside a loop that also calls ``backward()`` or an optimizer's
    ``step()`` is a progress estimate on a slice of the validation tokens, not the reported
    score (#1465's periodic ``val_bpb`` line beside an evaluation that divides by bytes)."""
    for loop in (a for a in index.ancestors(statement) if isinstance(a, (cst.For, cst.While))):
        for call in nodes_within(index.calls, loop, index):
            if call_tail(call) == "backward":
                return True
            if call_tail(call) == "step" and isinstance(call.func, cst.Attribute):
                if re.search(r"opt", index.code(call.func.value, 200), re.IGNORECASE):
                    return True
    return False
