"""Name-level vocabulary of the data-flow engine (PG101–PG106): what counts as a validation
source, which calls are sinks, and how expressions reduce to the dotted names they read.

Why names and not types: the checker never runs submission code, so it cannot know that a
tensor came from ``fineweb_val_*``; it can only follow names. The vocabulary is taken from the
shapes real submissions use (``val_tokens``, ``args.val_files``, ``load_validation_tokens``) and
is deliberately narrow so that settings such as ``val_batch_size`` never look like data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from harness.check.tree import nodes
from harness.check.tree.children import children, node_memo, walk
from harness.check.tree.nodes import dotted_name
from harness.check.words import any_word, first_word

# ---- sources: validation data ------------------------------------------------------------
# A name component that holds validation *data* (tokens, files, loaders), not a setting.
# ``valid_`` is left out on purpose: ``valid_tokens``/``valid_ids`` usually mean non-padding
# positions of a training batch.
VAL_COMPONENT = first_word(
    "(val|validation)_(tokens?|toks?|np|ids|data|files?|pattern|stream|buf|buffer|shards?|bytes|docs?|inputs?"
    "|targets?|loader|arr|array|chunks?|set|idx)"
)
# ``load_validation_tokens``, ``read_val_shard``: a VAL word and a loading word, unless the
# callee is an evaluation (``eval_val_loader`` scores, it does not load).
VAL_LOADER_CALL = any_word("val", "validation", "eval") & any_word(
    "load*", "*loader", "*loaders", "tokens", "read*", "shards?"
)
EVAL_CALL = first_word("eval*")
# A path literal, not a name: separator-anchored on purpose (``fineweb_val_*.bin``).
_VAL_LITERAL = re.compile(r"fineweb_val|(^|[/_\-.*])val(idation)?[_\-.*].*\.bin", re.IGNORECASE)

# ---- propagators: calls whose receiver (first argument for module-level functions) is
# mutated to hold the arguments: a list that receives VAL chunks is VAL afterwards.
MUTATOR_METHODS = frozenset(
    "append extend insert add update put push appendleft index_add_ scatter_add_ index_copy_ index_put_ "
    "masked_scatter_ add_ copy_ sub_ mul_ lerp_ addcmul_ addcdiv_ set_".split()
)
PARAM_WRITE_METHODS = frozenset({"add_", "copy_", "sub_", "mul_", "lerp_", "addcmul_", "addcdiv_"})
COLLECTIVE_FILL = re.compile(r"^(all_gather\w*|gather\w*|all_to_all\w*|broadcast\w*|scatter)$")
STATE_SNAPSHOT_CALLS = frozenset({"state_dict", "deepcopy", "load_state_dict", "save"})

# ---- sinks: calibration (PG106), the artifact (PG102/PG105), scoring (PG101/PG103) --------
CALIB_CALL = any_word("hessian*", "calib*", "recalib*", "collect_stat*", "activation_stat*", "gptq*", "*gptq")
ARTIFACT_QUANT_CALL = any_word(
    "quantiz*", "requantiz*", "serializ*", "reserializ*", "gptq*", "*gptq", "pack_model*", "export_model*"
)
ARTIFACT_COMPRESS_ROOT = any_word(
    "lzma*", "zlib*", "brotli*", "zstd*", "zstandard", "bz2*", "gzip*", "*compressors?", "cctx*"
)
SCORE_FUNCTION = first_word("eval*") | any_word("score*", "*score", "*scores", "rescor*")
# A name holding per-token or running scores (``tok_losses``, ``totalloss``, ``lp``, ``tok_ce``);
# short words count only whole, so ``device``, ``sequence`` or ``slice_buf`` are not scores.
SCORE_LIST_NAME = any_word(
    "*loss*", "*nll*", "*bpb*", "*score*", "*logprobs?", "log_probs?", "*entrop*", "bits", "(lp|ce|logp)s?", "xent"
)
# A print/log line whose text names a validation score (``val_bpb:``, ``..._exact``).
LOG_VAL_TEXT = any_word("vals?", "valonly", "valid*", "eval*", "preeval*", "dyneval*", "*bpb*", "exact")

# ---- sanitizers: what makes an update or an accumulator something else ---------------------
WARMUP_WORD = any_word("warm*", "prewarm*", "rewarm*")
TRAIN_WORD = any_word("train*")
# A training-data pipeline (``train_loader``, ``train_tokens``, ``args.train_files``), not a setting.
TRAIN_PIPELINE_NAME = any_word("train_?(loader|files|stream|tokens|data|batch|shards|pattern|iter)*")
# Counts and byte totals divide a score; they never hold one (``n_tokens``, ``tokcount``, ``seqlen``).
DENOMINATOR_NAME = any_word(
    "*bytes?*", "*toks?*", "count*", "*counts?", "cnt*", "*cnt", "num*", "n", "len*", "*lens?", "*lengths?", "total_t*"
)


def is_val_name(dotted: str) -> bool:
    """``val_data.base_bytes_lut`` counts: it is an attribute of a VAL-derived object."""
    return any(VAL_COMPONENT.search(part) for part in dotted.split("."))


def is_val_loader_call(callee_last: str) -> bool:
    return not EVAL_CALL.search(callee_last) and VAL_LOADER_CALL.search(callee_last)


def is_val_literal(text: str) -> bool:
    return bool(_VAL_LITERAL.search(text))


_LOG_CALLS = frozenset({"print", "log", "log0", "info", "write", "debug", "warning"})
_NOT_READ = frozenset({cst.Lambda, cst.FunctionDef, cst.ClassDef, cst.SimpleString, cst.Integer, cst.Float})


def callee_name(call: cst.Call) -> str:
    """Readable callee: ``torch.save``, ``loss.backward``, ``<expr>.step`` for computed receivers."""
    name = nodes.call_name(call)
    return name if name and not name.startswith(".") else "<expr>" + name


def is_log_call(callee: str) -> bool:
    """A print/log call by the last part of its callee's name."""
    return callee in _LOG_CALLS or "log" in callee.lower()


def last_part(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


def root_part(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def string_value(node: cst.BaseExpression) -> str | None:
    """Literal text of a plain or concatenated string, f-string text parts included: a log
    line's label (``f"val_bpb {x}"``) or a path pattern is what the vocabulary reads."""
    return nodes.string_value(node, fstrings=True)


_REFS: dict[int, tuple[cst.CSTNode, tuple[str, ...]]] = node_memo()


def refs(node: cst.CSTNode) -> tuple[str, ...]:
    """Every dotted name an expression reads, outermost attribute chains kept whole (comprehension
    variables too: local, never tainted by name). Memoized: the engine asks for every enclosing call."""
    entry = _REFS.get(id(node))
    if entry is not None and entry[0] is node:
        return entry[1]
    found = tuple(_walk_refs(node))
    _REFS[id(node)] = (node, found)
    return found


def _walk_refs(node: cst.CSTNode) -> Iterator[str]:
    stack: list[cst.CSTNode] = [node]
    while stack:
        current = stack.pop()
        if type(current) is cst.Name:
            yield current.value
        elif type(current) is cst.Attribute:
            dotted = dotted_name(current)
            if dotted is not None:
                yield dotted
            else:
                stack.append(current.value)
        elif type(current) is cst.Arg:
            stack.append(current.value)
        elif type(current) not in _NOT_READ:
            stack.extend(children(current))


def assigned_names(target: cst.CSTNode) -> list[str]:
    """Names bound by an assignment target; ``d[k] = v`` binds (mutates) ``d``."""
    dotted = dotted_name(target)
    if dotted is not None:
        return [dotted]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in assigned_names(element.value)]
    if isinstance(target, (cst.Attribute, cst.StarredElement, cst.Subscript)):
        return assigned_names(target.value)
    return []


_MATMUL_CALLS = frozenset({"matmul", "mm", "bmm", "addmm", "addmm_", "einsum", "outer", "ger", "baddbmm"})


def _is_matmul(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.MatrixMultiply):
        return True
    if isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.MatrixMultiplyAssign):
        return True
    return isinstance(node, cst.Call) and nodes.call_tail(node) in _MATMUL_CALLS


def contains_matmul(node: cst.CSTNode) -> bool:
    """``x.T @ x``, ``torch.matmul``, ``addmm``: the shape of a Hessian/activation statistic."""
    return any(_is_matmul(current) for current in walk(node))


_STATISTIC_REDUCTIONS = frozenset(
    {"amax", "amin", "maximum", "minimum", "max", "min", "abs", "mean", "var", "std", "norm", "square", "pow", "sum"}
)


def contains_activation_statistic(node: cst.CSTNode) -> bool:
    """``scales[name] = torch.maximum(scales[name], x.abs().amax(0))``: the per-channel maxima or
    moments that AWQ/SmoothQuant-style calibration keeps — data-dependent quantization just like a
    Hessian (R-QUANT-CALIB, #728), so a hook storing one is a statistics hook too."""
    return any(
        _is_matmul(current) or (isinstance(current, cst.Call) and nodes.call_tail(current) in _STATISTIC_REDUCTIONS)
        for current in walk(node)
    )


def names_read_outside_logs(body: list[cst.CSTNode]) -> set[str]:
    """Every plain name ``body`` reads outside print/log calls (assignment targets are not
    reads): a no_grad loss kept only for a progress line is a diagnostic, not a score."""
    found: set[str] = set()
    stack: list[tuple[cst.CSTNode, bool]] = [(node, False) for node in body]
    while stack:
        current, in_log = stack.pop()
        if type(current) is cst.Name and not in_log:
            found.add(current.value)
        elif type(current) is cst.Call and not in_log:
            in_log = is_log_call(nodes.call_tail(current))
        if type(current) is not cst.AssignTarget:
            stack.extend((child, in_log) for child in children(current))
    return found


def short(text: str, limit: int = 60) -> str:
    """One line of at most ``limit`` characters, for messages and path notes."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
