"""Static unwrapping of self-extracting shims: find every decode→decompress chain over
literals, decode it with capped pure decoders, and keep what parses as Python.

Why every chain and not just ``exec(...)`` arguments: real shims pass the decoded text to
``exec``, to ``compile``, to a name exec'd later, to ``linecache`` or to a temporary file
loaded with importlib. Whatever the sink, a decompressed literal that parses as Python is code
the submission can run, so it is analyzed. Nothing here executes submission code; a failure
(corrupt data, non-text, non-Python) of a chain whose result is executed, or a bomb anywhere,
becomes a problem string, never an exception. Names resolve by Python's scopes
(``unwrap_scope``): a helper's parameter is not the literal another function assigns.
"""

from __future__ import annotations

import ast
import posixpath
import re
import warnings
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import libcst as cst

from harness.python_ast import parse_python
from harness.unwrap_eval import OPEN_FUNCTIONS, Evaluator, NotLiteral
from harness.unwrap_ops import OPERATIONS, DecodeFailure, OverCap
from harness.unwrap_scope import BINDING_NODES, Scope, walk_with_owners

# Cheap text test run before any parse: a file that names no decoder, decompressor or file
# read cannot contain a chain, which spares a parse of every large ordinary source.
_MAYBE_CHAIN = re.compile(r"decode|unhexlify|a2b_|fromhex|decompress|Decompressor|read\(|read_text|read_bytes|run_path")
_EXEC_SINKS = frozenset({"exec", "compile", "eval", "builtins.exec", "builtins.compile"})
_RUN_FILE_CALLS = frozenset({"runpy.run_path", "importlib.util.spec_from_file_location"})
_TOTAL_BUDGET_FACTOR = 4


@dataclass(frozen=True)
class DecodedSource:
    """Python text decoded from a chain; ``line`` is the chain's line in the text it was found
    in and ``depth`` counts wrappers (1 = decoded from the file itself)."""

    text: str
    origin: str
    line: int
    depth: int


@dataclass
class UnwrapResult:
    """``siblings`` are submission-relative paths of files the text executes by reading them
    (``exec(open(...).read())``); the loader reads them, since this module sees only text.
    ``external`` are files it executes from outside the submission folder: this text itself was
    read in full, but the code those run was never submitted, so nothing can be said of it."""

    decoded: list[DecodedSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    siblings: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


@dataclass
class _Chain:
    node: ast.Call
    steps_named: tuple[str, ...]
    executed: bool


def unwrap_source(
    text: str,
    display_name: str,
    *,
    max_bytes: int = 32 * 2**20,
    max_depth: int = 8,
    file_path: str | None = None,
) -> UnwrapResult:
    """Decode every shim chain in ``text`` (recursively, depth-first, numbering decoded
    sources ``display_name[decoded#N]`` in discovery order). ``file_path`` is what
    ``__file__`` means for sibling paths; it defaults to ``display_name``."""
    state = _Unwrapper(display_name, file_path or display_name, max_bytes, max_depth)
    state.scan(text, display_name, depth=0)
    return state.result


class _Unwrapper:
    def __init__(self, display_name: str, file_path: str, max_bytes: int, max_depth: int) -> None:
        self.display_name = display_name
        self.file_path = file_path
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.budget = max_bytes * _TOTAL_BUDGET_FACTOR
        self.result = UnwrapResult()

    def scan(
        self, text: str, where: str, depth: int, tree: ast.Module | None = None, module: cst.Module | None = None
    ) -> None:
        if not _MAYBE_CHAIN.search(text):
            return
        tree = tree or _scan_tree(text, module)
        if tree is None:
            return
        scope = Scope()
        calls: list[ast.Call] = []
        assignments: list[ast.Assign | ast.NamedExpr] = []
        binders = BINDING_NODES
        name_owners = scope.name_owners
        nodes, owners = walk_with_owners(tree)  # one walk: it dominates the cost on large decoded sources
        for node, owner in zip(nodes, owners):
            kind = type(node)
            if isinstance(node, ast.Call):
                calls.append(node)
            elif kind is ast.Name:
                if owner is not None:
                    name_owners[id(node)] = owner
            elif kind in binders:
                scope.add(node, owner)
                if isinstance(node, (ast.Assign, ast.NamedExpr)):
                    assignments.append(node)
        evaluator = Evaluator(scope, self.max_bytes, self.file_path)
        try:
            chains = _find_chains(calls, assignments, evaluator)
            written = _written_paths(calls, evaluator)
            bundled = self._bundle(nodes, where, depth) if written or _writes_through_a_name(calls) else set()
            generated = self._siblings(calls, evaluator, where, written if chains else set(), bundled)
        except RecursionError:
            self.result.problems.append(f"{where}: too deeply nested to look for shim chains")
            return
        decoded_before = len(self.result.decoded)
        for chain in chains:
            self._decode(chain, evaluator, where, depth)
        if len(self.result.decoded) == decoded_before:
            # The file it runs was to be written from a payload that did not decode here.
            for line, target in generated:
                self.result.problems.append(
                    f"{where}:{line} executes {target}, which it writes at run time from "
                    "a payload that could not be decoded"
                )

    def _decode(self, chain: _Chain, evaluator: Evaluator, where: str, depth: int) -> None:
        line = chain.node.lineno
        label = " → ".join(chain.steps_named)
        if self.budget <= 0:
            self.result.problems.append(
                f"could not decode {where}:{line} ({label}): total decoded size budget exhausted"
            )
            return
        try:
            value = evaluator.evaluate(chain.node)
        except NotLiteral as not_literal:
            if chain.executed:
                self.result.problems.append(
                    f"could not decode {where}:{line} ({label}): the executed payload is not a literal ({not_literal})"
                )
            return
        except DecodeFailure as failure:
            # Only a shim fails: a literal nobody executes that does not decompress (a
            # table, a test vector) is data. A literal too large to decompress is still a
            # problem: a payload padded past the cap and run from a temporary file would
            # otherwise hide its code.
            if chain.executed or isinstance(failure, OverCap):
                self.result.problems.append(f"could not decode {where}:{line} ({label}): {failure}")
            return
        except (RecursionError, MemoryError):
            if chain.executed:
                self.result.problems.append(f"could not decode {where}:{line} ({label}): expression too complex")
            return
        if not isinstance(value.data, (bytes, bytearray, str)):
            return
        self.budget -= len(value.data)
        text = _as_text(value.data)
        steps = " → ".join(value.steps) or label
        tree = _ast_tree(text) if text is not None else None
        module = _libcst_module(text) if text is not None and tree is None else None
        if text is None or tree is None and module is None:
            if chain.executed:
                reason = "is not UTF-8 text" if text is None else "is not Python"
                self.result.problems.append(f"could not decode {where}:{line} ({steps}): the decoded data {reason}")
            return
        number = len(self.result.decoded) + 1
        self.result.decoded.append(
            DecodedSource(text=text, origin=f"decoded from {where}:{line} via {steps}", line=line, depth=depth + 1)
        )
        if depth + 1 >= self.max_depth:
            if _MAYBE_CHAIN.search(text) and _has_chain(text):
                self.result.problems.append(
                    f"could not decode {where}:{line}: shims nested deeper than {self.max_depth} levels"
                )
            return
        self.scan(text, f"{self.display_name}[decoded#{number}]", depth + 1, tree, module)

    def _bundle(self, nodes: list[ast.AST], where: str, depth: int) -> set[str]:
        """Python files a text carries as literals and writes out at run time (a bundle: a
        dict from relative paths to their source, each written beside the script, #1839).
        Each becomes a decoded source; returns their paths relative to the submission root."""
        folder = posixpath.dirname(self.file_path)
        paths: set[str] = set()
        for node in nodes:
            if type(node) is not ast.Dict or not node.keys:
                continue
            entries = [
                (key.value, value.value, value.lineno)
                for key, value in zip(node.keys, node.values)
                if isinstance(key, ast.Constant)
                and isinstance(key.value, str)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ]
            if len(entries) != len(node.keys) or not any(name.endswith(".py") for name, _, _ in entries):
                continue
            for name, text, line in entries:
                relative = posixpath.normpath(posixpath.join(folder, name))
                if not name.endswith(".py") or relative.startswith(("../", "/")) or self.budget < len(text):
                    continue
                tree = _ast_tree(text)
                module = _libcst_module(text) if tree is None else None
                if tree is None and module is None:
                    continue
                self.budget -= len(text)
                paths.add(relative)
                self.result.decoded.append(
                    DecodedSource(
                        text=text,
                        origin=f"bundled in {where}:{line} as {name}, written out at run time",
                        line=line,
                        depth=depth + 1,
                    )
                )
                if depth + 1 < self.max_depth:
                    number = len(self.result.decoded)
                    self.scan(text, f"{self.display_name}[decoded#{number}]", depth + 1, tree, module)
        return paths

    def _siblings(
        self,
        calls: list[ast.Call],
        evaluator: Evaluator,
        where: str,
        written: set[str],
        bundled: AbstractSet[str] = frozenset(),
    ) -> list[tuple[int, str]]:
        """Record the files this text executes; return (line, path) of those it writes itself
        first. A shim that writes its decoded payload to ``_train.py`` and runs that file
        (#1570, #1839) executes the decoded source this scan adds, not a missing sibling."""
        generated: list[tuple[int, str]] = []
        for node in calls:
            if not node.args:
                continue
            callee = evaluator.qualify(node.func)
            if callee in _EXEC_SINKS:
                target = evaluator.read_target(node.args[0])
            elif callee in _RUN_FILE_CALLS:
                argument = node.args[0] if callee == "runpy.run_path" else next(iter(node.args[1:2]), None)
                target = evaluator.path_of(argument) if argument is not None else None
            else:
                continue
            if target is None:
                continue
            normalized = posixpath.normpath(target)
            if normalized in bundled:
                continue  # its text is a decoded source of this scan
            if normalized in written:
                generated.append((node.lineno, target))
            elif normalized.startswith("/") or normalized == ".." or normalized.startswith("../"):
                self.result.external.append(f"{where}:{node.lineno} executes {target}, outside the submission folder")
            elif normalized not in self.result.siblings and normalized != ".":
                self.result.siblings.append(normalized)
        return generated


_WRITE_MODES = frozenset("wxa")


def _written_paths(calls: list[ast.Call], evaluator: Evaluator) -> set[str]:
    """Normalized paths the text opens for writing (``open(P, "wb")``) or writes through
    ``P.write_text(…)`` / ``P.write_bytes(…)``."""
    written: set[str] = set()
    for node in calls:
        target: ast.expr | None = None
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("write_text", "write_bytes"):
            target = func.value
        elif node.args and evaluator.qualify(func) in OPEN_FUNCTIONS:
            mode = (
                node.args[1]
                if len(node.args) > 1
                else next((keyword.value for keyword in node.keywords if keyword.arg == "mode"), None)
            )
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and _WRITE_MODES & set(mode.value):
                target = node.args[0]
        path = evaluator.path_of(target) if target is not None else None
        if path is not None:
            written.add(posixpath.normpath(path))
    return written


def _writes_through_a_name(calls: list[ast.Call]) -> bool:
    """``path.write_text(text)`` over a loop variable: the written path is not a literal."""
    return any(
        isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes", "write")
        for node in calls
    )


def _find_chains(
    calls: list[ast.Call], assignments: list[ast.Assign | ast.NamedExpr], evaluator: Evaluator
) -> list[_Chain]:
    """Maximal chains: calls naming a decoding step that are not inside the arguments of
    another such call. A chain is a candidate when it decompresses, or when it only decodes
    but its result is executed (``exec(b64decode(...))``)."""
    steps: dict[ast.Call, str] = {}
    for call in calls:
        operation = evaluator.operation_of(call)
        if operation is not None:
            steps[call] = operation
    if not steps:
        return []
    nested: set[ast.Call] = set()
    for call in steps:
        nested.update(n for n in _descendants(call) if n in steps)
    executed = _executed_values(calls, assignments, evaluator)
    chains = []
    for call in steps:
        if call in nested:
            continue
        inner = [call] + [n for n in _descendants(call) if n in steps]
        labels = tuple(_label(steps[n]) for n in reversed(inner))
        decompresses = any(steps[n].endswith(".decompress") or _codec_decompresses(n) for n in inner)
        if decompresses or call in executed:
            chains.append(_Chain(node=call, steps_named=labels, executed=call in executed))
    chains.sort(key=lambda chain: (chain.node.lineno, chain.node.col_offset))
    return chains


def _descendants(node: ast.AST) -> list[ast.Call]:
    found = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    return found[1:] if found and found[0] is node else found


def _executed_values(
    calls: list[ast.Call], assignments: list[ast.Assign | ast.NamedExpr], evaluator: Evaluator
) -> set[ast.AST]:
    """Expressions whose value reaches exec/compile: the first argument of the sink (through
    ``.decode()``/``.encode()``), or the value of an assignment to a name that is executed."""
    executed: set[ast.AST] = set()
    executed_names: set[str] = set()
    for call in calls:
        if call.args and evaluator.qualify(call.func) in _EXEC_SINKS:
            value = _without_text_conversion(call.args[0])
            executed.add(value)
            if isinstance(value, ast.Name):
                executed_names.add(value.id)
    for assignment in assignments:
        targets = assignment.targets if isinstance(assignment, ast.Assign) else [assignment.target]
        if any(isinstance(t, ast.Name) and t.id in executed_names for t in targets):
            executed.add(_without_text_conversion(assignment.value))
    return executed


def _without_text_conversion(node: ast.AST) -> ast.AST:
    while (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("decode", "encode")
    ):
        node = node.func.value
    return node


def _codec_decompresses(call: ast.Call) -> bool:
    """``codecs.decode(data, "zlib")`` decompresses; ``codecs.decode(data, "hex")`` does not."""
    codec = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "encoding"), None)
    return isinstance(codec, ast.Constant) and str(codec.value).lower().replace("-", "_") in (
        "zlib",
        "zip",
        "zlib_codec",
        "bz2",
        "bz2_codec",
    )


def _label(qualified: str) -> str:
    operation = OPERATIONS.get(qualified)
    return operation.label if operation else qualified


def _as_text(data: bytes | bytearray | str) -> str | None:
    """Decoded bytes become source text the way ``exec`` reads bytes: UTF-8 (BOM allowed)."""
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _ast_tree(text: str) -> ast.Module | None:
    """Python 3.11's ``ast`` is ~6x faster than libcst, so it is tried first everywhere."""
    if "\x00" in text:
        return None
    try:
        return parse_python(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _may_be_newer_syntax(text: str) -> bool:
    """Only an f-string complaint from 3.11's parser suggests PEP 701 syntax worth a libcst
    attempt. Anything else (plain syntax errors, nesting too deep) is not retried: libcst's
    time grows quadratically on long operator chains (minutes for 10,000 ``+`` terms), so a
    hostile file must not reach it just by failing ``ast``."""
    if "\x00" in text:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except SyntaxError as error:
        return "f-string" in str(error.msg)
    except (ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return False


def _libcst_module(text: str) -> cst.Module | None:
    """For 3.12 syntax (PEP 701 f-strings) that ``ast`` on 3.11 rejects: libcst's module,
    parsed as the parse layer parses (libcst's own parse; where its node validation refuses
    valid minified Python such as ``f(x)for x in y``, #1850, the parse layer spaces the glued
    keywords) and kept for it."""
    if not _may_be_newer_syntax(text):
        return None
    from harness.check.parse import parse_libcst  # the parse layer only when 3.12 syntax needs it

    try:
        return parse_libcst(text, remember=True)
    except Exception:  # noqa: BLE001 — libcst raises several types on hostile text
        return None


def _has_chain(text: str) -> bool:
    tree = _scan_tree(text)
    if tree is None:
        return False
    scope = Scope()
    for node, owner in zip(*walk_with_owners(tree)):
        scope.add(node, owner)
    evaluator = Evaluator(scope, 1, "")
    try:
        return any(evaluator.operation_of(n) for n in ast.walk(tree) if isinstance(n, ast.Call))
    except RecursionError:
        return False


def _scan_tree(text: str, module: cst.Module | None = None) -> ast.Module | None:
    """An ``ast`` tree to search for chains. When ``ast`` rejects the text (3.12 f-strings)
    but libcst accepts it, the simple statements that ``ast`` can parse are collected into
    one synthetic module with their original line numbers: shim chains live in such
    statements, and a statement holding 3.12-only syntax is not a chain we could evaluate."""
    tree = _ast_tree(text)
    if tree is not None:
        return tree
    module = module or _libcst_module(text)
    if module is None:
        return None
    from harness.check.parse import positions_of

    try:
        positions, nodes = positions_of(module, text)
    except RecursionError:
        return None
    body: list[ast.stmt] = []
    for statement in nodes:
        if type(statement) is not cst.SimpleStatementLine:
            continue
        position, offsets = positions.get(statement), positions.offsets(statement)
        if position is None or offsets is None:
            continue
        code = text[offsets[0] : offsets[1]]  # the statement's own text, from its first token
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            continue
        ast.increment_lineno(parsed, position.start.line - 1)
        body.extend(parsed.body)
    return ast.Module(body=body, type_ignores=[])
