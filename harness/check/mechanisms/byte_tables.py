"""PG204, per-token byte tables: the canonical special cases of a piece's byte count.

Why apart from the BPB formula checks (``byte_accounting``): these read how a per-piece
table is *built* (``len(id_to_piece(i).encode())`` without byte-fallback and ``▁`` handling,
#1271 Scylla, issue #897) and how the leading-space byte is *added* (only after a
non-boundary token), not how the final ratio is formed.
"""

from __future__ import annotations

import re

import libcst as cst

from harness.check.tree.children import children as walk_children
from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, last_identifier, string_value, target_names
from harness.check.words import any_word
from harness.findings import Step

from .callees import call_arguments
from .hit import Hit, step
from .targets import value_names

BYTE_NAME = re.compile(r"byte", re.IGNORECASE)
# A boundary test's words (``is_boundary``, ``bos_mask``, ``prev_is_ctrl``, ``unk_id``); ``unk`` no
# longer matches chunk, ``bos`` no longer verbose.
_BOUNDARY = any_word("*bound*", "bnd*", "*bnd", "bos*", "*bos", "*control*", "is_ctrl", "prev*", "*prev", "unk*")
_SPACE_LUT = re.compile(r"leading_space|has_space|space_lut|has_leading|lead_space", re.IGNORECASE)
_DECODE = re.compile(r"decode", re.IGNORECASE)
_LUT_NAME = re.compile(
    r"base_bytes|has_leading_space|leading_space|is_boundary|bytes_per_piece|piece_bytes|token_bytes", re.IGNORECASE
)
_LOADERS = {"load", "loadtxt", "fromfile", "load_file", "read_json"}
_CHECKS = {"array_equal", "allclose", "assert_array_equal", "equal"}


def find_lut_problems(index: ModuleIndex) -> list[Hit]:
    """Per-piece byte tables built from ``id_to_piece`` without the canonical special cases."""
    hits: list[Hit] = []
    for function in index.functions:
        if "id_to_piece" not in index.text_of(function) and "IdToPiece" not in index.text_of(function):
            continue
        calls = nodes_within(index.calls, function, index)
        if not any(call_tail(c) in {"id_to_piece", "IdToPiece"} for c in calls):
            continue
        # names bound to a decoder's output (``sp.decode(ids)``, a lossless case-transform inverse)
        assigns = nodes_within(index.assigns, function, index)
        decoded = {n for s in assigns if _decodes(assigned_value(s)) for n in target_names(s)}
        lengths = [call for call in calls if _piece_length(index, call, decoded)]
        if not lengths:
            continue
        text = index.code(function, 1_000_000)
        if not BYTE_NAME.search(text):
            continue  # piece lengths for something other than a byte table (vocab statistics)
        problems = []
        if not any(call_tail(c) in {"is_byte", "IsByte"} for c in calls) and "<0x" not in text:
            problems.append("byte-fallback pieces are counted by their text rendering instead of as 1 byte")
        if "\u2581" not in text and "\\u2581" not in text and "\\xe2\\x96\\x81" not in text:
            problems.append(
                "the `▁` word-boundary marker is counted as 3 text bytes instead of one space dropped after a boundary token"
            )
        if problems:
            message = f"byte table in `{function.name.value}`: " + "; ".join(problems)
            where = step(index, lengths[0], "piece length taken from its UTF-8 text")
            hits.append(byte_hit(index, index.enclosing_statement(lengths[0]), message, where))
    return hits


def byte_hit(index: ModuleIndex, node: cst.CSTNode, message: str, *path: Step) -> Hit:
    return Hit(rule="PG204", index=index, node=node, message=message, path=path)


def _decodes(node: cst.CSTNode | None) -> bool:
    return isinstance(node, cst.Call) and _DECODE.search(call_tail(node)) is not None


def _piece_length(index: ModuleIndex, length: cst.Call, decoded: set[str]) -> bool:
    """A piece's rendering length, ``len(piece.encode())``. Not the byte count of decoded text
    (``len(decode(prefix).encode()) - cursor``: the decoder maps byte-fallback pieces to their byte
    and ``▁`` to a space; the CaseOps raw-byte sidecar is built so, #1729, #2138), nor a fallback
    inside an ``except`` handler of such a count."""
    if call_tail(length) != "len" or not length.args:
        return False
    argument = length.args[0].value
    if not any(isinstance(n, cst.Call) and call_tail(n) == "encode" for n in walk(argument)):
        return False
    if any(_decodes(n) for n in walk(argument)) or any(n.value in decoded for n in value_names(argument)):
        return False
    return not decoded or not any(isinstance(a, cst.ExceptHandler) for a in index.ancestors(length))


def find_missing_boundary_rule(index: ModuleIndex) -> list[Hit]:
    """Adding the leading-space byte for every target, even right after a boundary token."""
    hits: list[Hit] = []
    passed = _argument_words(index)
    for function in index.functions:
        aliases = passed.get(function.name.value, {})
        space_params = {p for p, words in aliases.items() if any(_SPACE_LUT.search(w) for w in words)}
        if not space_params and not _SPACE_LUT.search(index.text_of(function)):
            continue
        uses = [s for s in nodes_within(index.subscripts, function, index) if _reads_space(index, s, space_params)]
        if not uses:
            continue  # only builds the table (``lead_space[tid] = True``)
        if not BYTE_NAME.search(index.text_of(function)) and not any(
            BYTE_NAME.search(w) for words in aliases.values() for w in words
        ):
            continue  # a word-start feature for the model (#1252), not a byte count
        if _boundary_condition_applied(index, function, uses, aliases):
            continue
        message = (
            f"`{index.code(uses[0], 60)}` adds the leading-space byte for every token; the canonical count "
            "adds it only when the previous token is not a boundary token"
        )
        where = step(index, uses[0], "leading-space byte added without the boundary condition")
        hits.append(byte_hit(index, index.enclosing_statement(uses[0]), message, where))
    return hits


def _reads_space(index: ModuleIndex, subscript: cst.Subscript, space_params: set[str]) -> bool:
    """``lut[y]`` / ``self.lut[y]`` read by token ids — not ``lut.shape[0]``, a store that builds
    the table (``lead_space[tid] = True``) or a slice copy (``lut[:n] = …`` padding)."""
    name = last_identifier(subscript.value)
    if name is None or (_SPACE_LUT.search(name) is None and name not in space_params):
        return False
    parent = index.parent(subscript)
    stored = isinstance(parent, cst.AssignTarget) or (isinstance(parent, cst.AugAssign) and parent.target is subscript)
    return not stored and all(isinstance(element.slice, cst.Index) for element in subscript.slice)


def _argument_words(index: ModuleIndex) -> dict[str, dict[str, set[str]]]:
    """Function name → parameter → names of the arguments its call sites pass for it: minified
    scorers take the LUTs as one-letter parameters (``def ev_ng(…, bb, ls, bd)``), so
    ``B += (bb[y] + ls[y]).sum()`` is the issue #897 miscount, and ``ls[y] & ~bd[x]`` its fix,
    only by the names at the call site (``has_leading_space_lut``, ``is_boundary_token_lut``)."""
    wanted = {f.name.value: f for f in index.functions}
    passed: dict[str, dict[str, set[str]]] = {}
    for peer in index.peers or [index]:
        for call in peer.calls:
            function = wanted.get(call_tail(call))
            if function is None:
                continue
            for param, argument in call_arguments(call, function).items():
                words = _words(argument, skip_slices=True) - {param}
                if words:
                    passed.setdefault(function.name.value, {}).setdefault(param, set()).update(words)
    return passed


def _words(expr: cst.CSTNode, skip_slices: bool = False) -> set[str]:
    """Variable names and attribute members in ``expr``; with ``skip_slices``, not those
    only inside subscript indices (``lut[y[0]]`` reads ``lut``, positions come from ``y``)."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            found.add(node.value)
        elif isinstance(node, cst.Attribute):
            found.add(node.attr.value)
            stack.append(node.value)
        elif skip_slices and isinstance(node, cst.Subscript):
            stack.append(node.value)
        elif not isinstance(node, (cst.Lambda, cst.FunctionDef)):
            stack.extend(walk_children(node))
    return found


def _boundary_condition_applied(
    index: ModuleIndex, function: cst.FunctionDef, uses: list[cst.Subscript], aliases: dict[str, set[str]]
) -> bool:
    """Is the "previous token is not a boundary" test where the byte is counted: in the statement
    reading the space table (``space[y] & ~bnd[x]``), in a later correction of the same byte
    variable (``tb[bnd[x]] -= 1``), or in a flag combined with the table (``ok = ~bnd[x]``)? A BOS
    id that only splits the stream into documents is the issue #897 miscount all the same."""

    def _names_boundary(words: set[str]) -> bool:
        return any(_BOUNDARY.search(w) for w in words | {a for w in words for a in aliases.get(w, ())})

    statements = [index.enclosing_statement(u) for u in uses]
    if any(_names_boundary(_words(s)) for s in statements):
        return True
    outputs = {n for s in statements for n in target_names(s)}
    flags = {n for s in statements for n in _words(assigned_value(s) or s, skip_slices=True)} - outputs
    use_line = min(index.line(s) for s in statements)
    for statement in nodes_within(index.assigns, function, index):
        value = assigned_value(statement)
        if value is None:
            continue
        targets = set(target_names(statement))
        words = _words(statement)
        if targets & flags and _names_boundary(_words(value)):
            return True  # the flag combined with the table is the boundary test
        if index.line(statement) >= use_line and (targets | words) & outputs and _names_boundary(words - outputs):
            return True  # the counted bytes are corrected with the boundary test afterwards
    return False


def find_shipped_byte_table(index: ModuleIndex) -> list[Hit]:
    """The per-token byte table read from a shipped file (``np.load(meta)["base_bytes"]``), not
    built from the tokenizer: the Scylla record's ``meta.npz`` counted byte-fallback pieces as 3
    bytes and was removed (#1184, #1271, #1806). A comparison with the tokenizer-built table that
    always runs (``array_equal(table, build_luts(sp))``) makes it a cache; one behind a switch does not."""
    # only functions that call a loader can read a table from a file: found from the index's
    # calls, so the other functions' bodies are never walked
    loading = {id(index.enclosing_function(call)) for call in index.calls if call_tail(call) in _LOADERS}
    if not loading or any(call_tail(call) in _CHECKS and not _guarded(index, call) for call in index.calls):
        return []  # the file is only a cache of a table the tokenizer rebuilds and compares
    hits: list[Hit] = []
    for function in (f for f in index.functions if id(f) in loading):
        assigns = nodes_within(index.assigns, function, index)
        loaded = {n for s in assigns if _loads(assigned_value(s)) for n in target_names(s)}
        for node in walk(function.body):
            if isinstance(node, cst.WithItem) and _loads(node.item) and node.asname is not None:
                if isinstance(node.asname.name, cst.Name):
                    loaded.add(node.asname.name.value)
        for statement in assigns:
            names = [n for n in target_names(statement) if _LUT_NAME.search(n)]
            value = assigned_value(statement)
            if not loaded or not names or value is None:
                continue
            read = next((n for n in walk(value) if _reads_table(n, loaded)), None)
            if read is None:
                continue
            message = (
                f"the per-token byte table `{names[0]}` is read from a shipped file (`{index.code(read, 50)}`) "
                "instead of being built from the tokenizer, and nothing always checks it against the tokenizer: "
                "the BPB denominator is whatever the file says"
            )
            where = step(index, statement, "byte table loaded from a file, not computed")
            hits.append(byte_hit(index, statement, message, where))
            break  # one finding per loader: its sibling tables come from the same file
    return hits


def _loads(value: cst.CSTNode | None) -> bool:
    return isinstance(value, cst.Call) and call_tail(value) in _LOADERS


def _reads_table(node: cst.CSTNode, loaded: set[str]) -> bool:
    """``meta["base_bytes"]`` on a loaded file."""
    if not isinstance(node, cst.Subscript) or not isinstance(node.value, cst.Name) or node.value.value not in loaded:
        return False
    keys = [string_value(e.slice.value) or "" for e in node.slice if isinstance(e.slice, cst.Index)]
    return any(_LUT_NAME.search(key) for key in keys)


def _guarded(index: ModuleIndex, node: cst.CSTNode) -> bool:
    """Inside the body of an ``if`` (not its test: ``if not array_equal(…): raise`` checks)."""
    child = node
    for ancestor in index.ancestors(node):
        if isinstance(ancestor, cst.If) and child is not ancestor.test:
            return True
        child = ancestor
    return False
