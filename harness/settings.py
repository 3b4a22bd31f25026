"""The effective run configuration: environment settings the submitter documented.

Why: legality is usually switched by environment variables whose code default is off, while
the README's run command, a ``*.sh`` script or the hyperparameter dump at the top of the
submitted logs turns them on — and the reported score comes from that run. Rules must judge
the configuration that actually ran and say which setting enabled a path and where it came
from, so every setting keeps its file, line and kind.

Precedence, lowest to highest (documented choice):
``setdefault`` (``os.environ.setdefault`` in the code: it only fills in what the launcher did
not set, so it is a code-level default) < ``readme`` < ``script`` (``*.sh``) < ``log`` (what
the run recorded) < ``code`` (``os.environ["X"] = ...`` in the code overwrites the launcher's
value, so it wins over everything). Within one kind the last occurrence wins (files in sorted
order, lines in order), as a shell running the documented commands in sequence would leave it.
Code defaults (``os.environ.get("X", "0")``) are not settings: rules read them from the code.
"""

from __future__ import annotations

import ast
import posixpath
import re
import shlex
import warnings
from pathlib import Path

from harness.submission import Setting, SourceFile, read_document_head

PRECEDENCE = {"setdefault": 0, "readme": 1, "script": 2, "log": 3, "code": 4}
_READ_LIMIT = 512 * 1024  # documentation and log heads are small; never read a huge file whole
_LOG_HEAD_LINES = 3000
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGNMENT = re.compile(rf"^({_NAME})=(.*)$", re.S)
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", ";;"})
_KEYWORD_PREFIXES = frozenset({"do", "then", "else", "time", "nohup", "exec", "$", ">", "{", "sudo"})
_ENV_OPTIONS_WITH_VALUE = frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"})
_NON_SHELL_FENCES = frozenset({"python", "py", "json", "toml", "yaml", "yml", "diff", "ini", "cfg"})
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_PLAIN_COMMAND = re.compile(
    r"((?:\b[A-Z][A-Z0-9_]*=\S+\s+)+(?:env\s+)?(?:torchrun|python3?|bash|sh|accelerate|srun|uv|deepspeed|\./\S+)\b.*)"
)
_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
_LOG_TIMESTAMP = re.compile(r"^\s*\[?\d{9,13}(?:\.\d+)?\]?\s*[:|-]?\s*")
_LOG_PAIR = re.compile(r"^\s{0,4}([a-z][a-z0-9_]*)\s*[:=]\s*(\S.*?)\s*$")
_LOG_TOKEN_PAIR = re.compile(r"^([a-z][a-z0-9_]*)[:=](\S+)$")
# ``sgd_ttt:param_set:control``: the value is itself ``name:value`` — ``sgd_ttt`` labels a sub-field
_NESTED_LABEL = re.compile(r"^[a-z][a-z0-9_]*[:=]")
_LOG_STOP = re.compile(r"\bstep[:=]\s*\d+\s*/\s*\d+|\bstep:\d+|\bval_bpb[:=]\s*\d")
_CODE_LINE = re.compile(r"^(import \w|from [\w.]+ import |def |class |@\w|if __name__)")
_SEPARATOR_LINE = re.compile(r"^\s*[=\-#*]{10,}\s*$")
_ENV_WRITE = re.compile(r"environ\s*(?:\.\s*setdefault\s*\(|\[[^\]]+\]\s*=[^=])")


def collect_settings(root: Path, files: list[str], sources: list[SourceFile]) -> dict[str, Setting]:
    """The effective value of each documented setting (see the module docstring for the
    precedence)."""
    effective: dict[str, Setting] = {}
    for setting in _all_settings(root, files, sources):
        current = effective.get(setting.name)
        if current is None or PRECEDENCE[setting.source_kind] >= PRECEDENCE[current.source_kind]:
            effective[setting.name] = setting
    return effective


def documented_alternatives(root: Path, files: list[str], sources: list[SourceFile]) -> list[dict[str, Setting]]:
    """The effective settings as each README run command or script line would leave them
    (logs still on top), where that differs from ``collect_settings``: a README whose
    "reproduce" command turns a switch on and whose later ablation command turns it off
    documents both runs, and code is "not run" only if no documented run reaches it."""
    found = _all_settings(root, files, sources)
    effective = collect_settings(root, files, sources)
    logged = {s.name for s in found if s.source_kind == "log"}
    groups: dict[tuple[str, int], list[Setting]] = {}
    for setting in found:
        if setting.source_kind in ("readme", "script") and setting.name not in logged:
            groups.setdefault((setting.file, setting.line), []).append(setting)
    alternatives: list[dict[str, Setting]] = []
    for group in groups.values():
        if all(s.name in effective and effective[s.name].value == s.value for s in group):
            continue  # the same run as the effective one
        alternative = dict(effective)
        alternative.update({s.name: s for s in group})
        if alternative not in alternatives:
            alternatives.append(alternative)
    return alternatives


def _all_settings(root: Path, files: list[str], sources: list[SourceFile]) -> list[Setting]:
    """Every documented setting in precedence order, then file order, then line order."""
    found: list[Setting] = []
    for source in sources:
        found += code_settings(source.text, source.display_name)
    for name in sorted(files):
        base = posixpath.basename(name).lower()
        if base.startswith("readme") and base.endswith((".md", ".txt", ".rst", "readme")):
            found += readme_settings(_read_head(root, name), name)
    for name in sorted(files):
        if name.lower().endswith(".sh"):
            found += script_settings(_read_head(root, name), name)
    logged: list[Setting] = []
    for name in sorted(files):
        base = posixpath.basename(name).lower()
        if base.endswith((".log", ".txt")) and not base.startswith(("readme", "requirements")):
            logged += log_settings(_read_head(root, name), name)
    found += _through_fields(logged, sources)
    return sorted(found, key=lambda s: PRECEDENCE[s.source_kind])


# ``pq_on = bool(int(os.environ.get("PREQUANT_TTT_ENABLED", "0")))``: a field and the env key it reads
_FIELD_ENV = re.compile(
    r"(?:^|[;\s(])([A-Za-z_]\w*)\s*=\s*[^;\n=]*?(?:environ\.get|getenv|environ\[)\s*\(?\s*[\"']([A-Za-z_]\w*)[\"']"
)


def _through_fields(logged: list[Setting], sources: list[SourceFile]) -> list[Setting]:
    """Log settings, plus each one named for a field rather than the env key the field reads.

    A log dump prints the hyperparameter object's fields; in minified code a field such as
    ``pq_on`` reads ``PREQUANT_TTT_ENABLED``, so ``pq_on: True`` in the log sets that key."""
    if not logged:
        return logged
    aliases: dict[str, str] = {}
    env_keys: set[str] = set()
    for source in sources:
        for field, key in _FIELD_ENV.findall(source.text):
            env_keys.add(key)
            if field.upper() != key:
                aliases.setdefault(field.upper(), key)
    extra = [
        Setting(aliases[s.name], s.value, s.file, s.line, s.source_kind)
        for s in logged
        if s.name in aliases and s.name not in env_keys
    ]
    return logged + extra


def _read_head(root: Path, name: str) -> str:
    return read_document_head(root / name, _READ_LIMIT)


# ---- shell: README run commands and *.sh scripts ---------------------------------------


def script_settings(text: str, file: str) -> list[Setting]:
    return _Shell(file, "script").run(text, 1)


def readme_settings(text: str, file: str) -> list[Setting]:
    """Run commands in fenced shell blocks, in inline code spans, and plain-text lines that
    look like ``X=1 torchrun …``."""
    shell = _Shell(file, "readme")
    block: list[str] = []
    block_start = 0
    fence: str | None = None
    fence_is_shell = True
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence, fence_is_shell = opening.group(1), opening.group(2).lower() not in _NON_SHELL_FENCES
            block, block_start = [], number + 1
        elif fence is not None:
            if line.strip().startswith(fence):
                if fence_is_shell:
                    shell.run("\n".join(block), block_start)
                fence = None
            else:
                block.append(line)
        else:
            spans = _INLINE_CODE.findall(line)
            for span in spans:
                shell.run(span, number)
            plain = _INLINE_CODE.sub(" ", line)
            match = _PLAIN_COMMAND.search(plain)
            if match:
                shell.run(match.group(1), number)
    if fence is not None and fence_is_shell:
        shell.run("\n".join(block), block_start)
    return shell.found


class _Shell:
    """A tiny model of the shell: enough to know which variables reach a launched command's
    environment (``X=1 cmd``, ``export X=1``, ``env X=1 cmd``, ``for X in 1 2 3``)."""

    def __init__(self, file: str, kind: str) -> None:
        self.file = file
        self.kind = kind
        self.variables: dict[str, list[str]] = {}
        self.found: list[Setting] = []

    def run(self, text: str, first_line: int) -> list[Setting]:
        for command in _commands(_tokens(text, first_line)):
            self._command(command)
        return self.found

    def _command(self, tokens: list[tuple[str, int]]) -> None:
        index = 0
        while index < len(tokens) and tokens[index][0] in _KEYWORD_PREFIXES:
            index += 1
        if index >= len(tokens):
            return
        word = tokens[index][0]
        if word == "for":
            self._loop(tokens[index + 1 :])
            return
        if word in ("export", "declare", "typeset"):
            self._export(tokens[index + 1 :])
            return
        assignments: list[tuple[str, str, int]] = []
        while index < len(tokens):
            token, line = tokens[index]
            if token == "env":
                index += 1
                while index < len(tokens) and tokens[index][0].startswith("-"):
                    index += 2 if tokens[index][0] in _ENV_OPTIONS_WITH_VALUE else 1
                continue
            match = _ASSIGNMENT.match(token)
            if not match:
                break
            assignments.append((match.group(1), match.group(2), line))
            index += 1
        launches = index < len(tokens)
        for name, raw, line in assignments:
            values = self._expand(raw)
            if launches:
                for value in values:
                    self._record(name, value, line)
            else:
                self.variables[name] = values

    def _loop(self, tokens: list[tuple[str, int]]) -> None:
        if len(tokens) < 2 or tokens[1][0] != "in" or not re.fullmatch(_NAME, tokens[0][0]):
            return
        name = tokens[0][0]
        values: list[str] = []
        for token, _line in tokens[2:]:
            values += self._expand(token)
        self.variables[name] = values
        for value in values:
            self._record(name, value, tokens[0][1])

    def _export(self, tokens: list[tuple[str, int]]) -> None:
        for token, line in tokens:
            if token.startswith("-"):
                continue
            match = _ASSIGNMENT.match(token)
            if match:
                values = self._expand(match.group(2))
                self.variables[match.group(1)] = values
                for value in values:
                    self._record(match.group(1), value, line)
            elif re.fullmatch(_NAME, token) and token in self.variables:
                for value in self.variables[token]:
                    self._record(token, value, line)

    def _expand(self, raw: str) -> list[str]:
        """``$X``/``${X}``/``${X:-d}`` from variables set earlier; a value that depends on a
        variable we do not know is dropped rather than guessed."""
        results = [""]
        position = 0
        for match in _VARIABLE.finditer(raw):
            name = match.group(1) or match.group(3)
            options = self.variables.get(name) or ([match.group(2)] if match.group(2) is not None else None)
            if options is None:
                return []
            prefix = raw[position : match.start()]
            results = [done + prefix + option for done in results for option in options][:64]
            position = match.end()
        return [done + raw[position:] for done in results]

    def _record(self, name: str, value: str, line: int) -> None:
        self.found.append(Setting(name=name, value=value, file=self.file, line=line, source_kind=self.kind))


def _tokens(text: str, first_line: int) -> list[tuple[str, int]]:
    """Shell words with their lines; a backslash-newline continues the command and a newline
    ends it (represented as a ``;`` token)."""
    tokens: list[tuple[str, int]] = []
    for offset, physical in enumerate(text.splitlines()):
        line = first_line + offset
        stripped = physical.rstrip()
        continued = stripped.endswith("\\")
        if continued:
            stripped = stripped[:-1]
        lexer = shlex.shlex(stripped, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            words = stripped.split()
        tokens += [(word, line) for word in words]
        if not continued:
            tokens.append((";", line))
    return tokens


def _commands(tokens: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    commands: list[list[tuple[str, int]]] = [[]]
    for token, line in tokens:
        if token in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append((token, line))
    return [command for command in commands if command]


# ---- logs: the hyperparameter dump at the top -------------------------------------------


def log_settings(text: str, file: str) -> list[Setting]:
    """``name: value`` lines (or one line of ``k:v`` pairs, optionally behind a Unix
    timestamp) before the first training-step or score line; a source-code dump at the top
    of the log (``import …``) is skipped up to its separator line. Names are upper-cased to
    the env names that set them (``ttt_enabled: True`` → ``TTT_ENABLED=True``)."""
    found: list[Setting] = []
    in_code = False
    for number, raw in enumerate(text.splitlines()[:_LOG_HEAD_LINES], 1):
        line = _LOG_TIMESTAMP.sub("", raw, count=1)
        if _SEPARATOR_LINE.match(line):
            in_code = False
            continue
        if _CODE_LINE.match(line):
            in_code = True
        if in_code:
            continue
        if _LOG_STOP.search(line):
            break
        words = line.split()
        if len(words) >= 4 and words[0].endswith(":") and not _LOG_TOKEN_PAIR.match(words[0]):
            words = words[1:]  # a labelled one-line dump: "Hyperparameters: a:1 b:2 c:3"
        pairs = [_LOG_TOKEN_PAIR.match(word) for word in words]
        if len(words) >= 3 and all(pairs):
            found += [_token_setting(m.group(1), m.group(2), file, number) for m in pairs if m]
            continue
        match = _LOG_PAIR.match(line)
        if match and " = " not in match.group(2) and not match.group(2).endswith((":", "(", "[", "{")):
            found.append(_log_setting(match.group(1), match.group(2), file, number))
    return found


def _token_setting(name: str, value: str, file: str, line: int) -> Setting:
    """``sgd_ttt:param_set:control`` / ``compile:enabled=1``: the label prefixes a sub-field
    (SGD_TTT_PARAM_SET=control, COMPILE_ENABLED=1), the env naming these dumps mirror; bound to
    the label itself, the truthy "param_set:control" switched on a TTT that never ran (#487)."""
    nested = _NESTED_LABEL.match(value)
    if nested:
        return _log_setting(f"{name}_{value[: nested.end() - 1]}", value[nested.end() :], file, line)
    return _log_setting(name, value, file, line)


def _log_setting(name: str, value: str, file: str, line: int) -> Setting:
    return Setting(name=name.upper(), value=value, file=file, line=line, source_kind="log")


# ---- code: os.environ.setdefault / os.environ[...] = -------------------------------------


def code_settings(text: str, display_name: str) -> list[Setting]:
    """``os.environ.setdefault("X", "1")`` (kind ``setdefault``) and ``os.environ["X"] = "1"``
    (kind ``code``) with literal arguments, found by the parser (so text in strings and
    comments does not count); 3.12-only sources that ``ast`` rejects are skipped."""
    if not _ENV_WRITE.search(text):
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return []
    found: list[Setting] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault":
            if _is_environ(node.func.value) and len(node.args) == 2:
                name, value = _literal(node.args[0]), _literal(node.args[1])
                if name is not None and value is not None:
                    found.append(Setting(name, value, display_name, node.lineno, "setdefault"))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and _is_environ(target.value):
                    name, value = _literal(target.slice), _literal(node.value)
                    if name is not None and value is not None:
                        found.append(Setting(name, value, display_name, node.lineno, "code"))
    return sorted(found, key=lambda setting: setting.line)


def _is_environ(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "environ"
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _literal(node: ast.expr) -> str | None:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (str, int, float))
        and not isinstance(node.value, bool)
    ):
        return str(node.value)
    return None
