"""Runtime guards: while submission code runs, refuse and record network access, reads of
training data or of files outside the evaluation's inputs, and process spawning.

Why audit hooks: the README forbids network calls and training-data access during evaluation
(R-ART-SELFCONTAINED, R-DATA-NO-TRAIN-AT-EVAL), and the static checker cannot see what a
submission's ``golf_entry.py`` does at run time. ``sys.addaudithook`` sees every Python-level
``open``, socket, ``urllib``/``http.client`` and process event in the process, and raising from
the hook makes the operation fail. Each refusal is also recorded, so a submission that catches
the ``PermissionError`` and carries on is still reported: a blocked attempt is a finding.

Audit hooks cannot be removed, so one hook is installed per process and stays inert unless a
``guarded(...)`` block is active (module-level ``_ACTIVE``). They see Python-level operations
only: native code (or ``ctypes`` calls into libc) can bypass them, so adversarial review still
needs an OS sandbox; the guards catch what honest-but-careless or scripted code does.

File policy (paths are resolved through symlinks before they are judged):
- training data — a base name matching ``training_globs`` or a path in ``forbidden_paths`` — is
  refused for reading and writing (PG302);
- an allowed *folder* (submission, output dir) and the temp dir may be read and written; an allowed
  *file* (artifact, tokenizer, validation shard) may only be read;
- Python's own installation (``sys.prefix``, site-packages) may be read, and code files (``.py``,
  ``.pyc``, ``.so``…) may be read from ``sys.path`` and from the folders holding ``harness`` and
  ``reference_model`` (imports);
- ``/proc``, ``/sys``, ``/dev/urandom`` may be read and ``/dev/null`` written;
- anything else is refused (PG302). Bytecode caches are not written while guarded.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import site
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from harness.catalog import finding, load_catalog
from harness.errors import UsageError
from harness.evaluate.scored import RuntimeViolation
from harness.findings import Finding

NETWORK_RULE = "PG301"
FILE_RULE = "PG302"
PROCESS_RULE = "PG301"  # a child process escapes the hooks: it could reach the network unseen
TRAINING_GLOBS: tuple[str, ...] = ("fineweb_train_*",)
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyi", ".so", ".pyd", ".pth"})
READABLE_SYSTEM_ROOTS: tuple[str, ...] = ("/proc", "/sys", "/dev/urandom", "/dev/random")
WRITABLE_SYSTEM_FILES: tuple[str, ...] = ("/dev/null",)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class GuardRefusal(RuntimeViolation, PermissionError):
    """Raised inside the submission's call when a guard refuses an operation.

    A ``RuntimeViolation`` so the evaluator stops cleanly, and a ``PermissionError`` so code
    that handles ordinary permission problems sees the kind of failure it expects. ``recorded``
    tells the evaluator that the guard session already holds the finding (with its source line).
    """

    recorded = True


@dataclass(frozen=True)
class Attempt:
    """One refused operation, as listed in report.json."""

    rule: str
    event: str
    target: str
    file: str
    line: int
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "event": self.event,
            "target": self.target,
            "file": self.file,
            "line": self.line,
            "count": self.count,
        }


@dataclass
class PathPolicy:
    """Which files may be read or written while guarded (see the module docstring)."""

    readable_files: frozenset[str]
    writable_dirs: tuple[str, ...]
    readable_dirs: tuple[str, ...]
    code_dirs: tuple[str, ...]
    forbidden_files: frozenset[str]
    forbidden_dirs: tuple[str, ...]
    training_globs: tuple[str, ...]
    withheld: tuple[str, ...] = ()  # validation data and the audit log, in the child of --isolate

    def is_training_data(self, *candidates: str) -> bool:
        for path in candidates:
            name = os.path.basename(path)
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.training_globs):
                return True
            if path in self.forbidden_files or _under_any(path, self.forbidden_dirs):
                return True
        return False

    def may_write(self, path: str) -> bool:
        if path in self.readable_files:
            return False  # the evaluation's inputs stay as they were hashed, even inside tmp
        return path in WRITABLE_SYSTEM_FILES or _under_any(path, self.writable_dirs)

    def may_read(self, path: str) -> bool:
        if path in self.readable_files or self.may_write(path) or _under_any(path, self.readable_dirs):
            return True
        return os.path.splitext(path)[1] in CODE_SUFFIXES and _under_any(path, self.code_dirs)


@dataclass
class GuardSession:
    """What a ``guarded`` block yields: the live list of findings and the refused attempts."""

    policy: PathPolicy
    findings: list[Finding] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    _index: dict[tuple[str, str, str, str, int], int] = field(default_factory=dict)

    def record(self, rule: str, event: str, target: str, message: str, where: tuple[str, int]) -> None:
        """Remember a refusal once per (rule, event, target, place); repeats only bump the count."""
        key = (rule, event, target, where[0], where[1])
        position = self._index.get(key)
        if position is not None:
            old = self.attempts[position]
            self.attempts[position] = Attempt(old.rule, old.event, old.target, old.file, old.line, old.count + 1)
            return
        self._index[key] = len(self.attempts)
        self.attempts.append(Attempt(rule, event, target, where[0], where[1]))
        self.findings.append(finding(rule, where[0], where[1], message))

    def to_json(self) -> dict[str, Any]:
        return {"attempts": [attempt.to_json() for attempt in self.attempts]}


_ACTIVE: GuardSession | None = None
_HOOK_INSTALLED = False
_INSTALL_LOCK = threading.Lock()
_IN_HOOK = threading.local()
_INTERNAL_ROOTS: tuple[str, ...] = ()


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _under_any(path: str, roots: Iterable[str]) -> bool:
    return any(_under(path, root) for root in roots)


def _resolved(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(path))


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    with contextlib.suppress(AttributeError):
        roots.update(site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        roots.add(user_site)
    return sorted(_resolved(root) for root in roots if root)


def _project_code_dirs() -> list[str]:
    """Folders holding the harness and the reference model (an editable install is not on sys.path)."""
    harness_dir = Path(__file__).resolve().parents[1]
    return [str(harness_dir.parent)]


def build_policy(
    allowed_paths: Sequence[Path | str],
    forbidden_paths: Sequence[Path | str] = (),
    training_globs: Sequence[str] = TRAINING_GLOBS,
    withheld_paths: Sequence[Path | str] = (),
) -> PathPolicy:
    """Resolve the allowed and forbidden paths once, before the hook goes live."""
    readable_files: set[str] = set()
    writable_dirs: list[str] = [_resolved(tempfile.gettempdir())]
    for raw in allowed_paths:
        path = _resolved(raw)
        if os.path.isfile(path):
            readable_files.add(path)
        else:  # a folder, or an output folder that does not exist yet
            writable_dirs.append(path)
    forbidden_files = {_resolved(p) for p in forbidden_paths if not os.path.isdir(p)}
    forbidden_dirs = tuple(_resolved(p) for p in forbidden_paths if os.path.isdir(p))
    code_dirs = [_resolved(entry or os.getcwd()) for entry in sys.path if os.path.isdir(entry or os.getcwd())]
    code_dirs += _project_code_dirs()
    return PathPolicy(
        readable_files=frozenset(readable_files),
        writable_dirs=tuple(writable_dirs),
        readable_dirs=tuple(_python_roots()) + READABLE_SYSTEM_ROOTS,
        code_dirs=tuple(dict.fromkeys(code_dirs)),
        forbidden_files=frozenset(forbidden_files),
        forbidden_dirs=forbidden_dirs,
        training_globs=tuple(training_globs),
        withheld=tuple(_resolved(p) for p in withheld_paths),
    )


# ------------------------------------------------------------------ event handlers


def _culprit() -> tuple[str, int]:
    """The innermost frame outside Python's installation and the harness: the submission's line."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<") and not _under_any(os.path.abspath(filename), _INTERNAL_ROOTS):
            return os.path.basename(filename), frame.f_lineno
        frame = frame.f_back
    return "<runtime>", 0


def _refuse(session: GuardSession, rule: str, event: str, target: str, message: str) -> None:
    session.record(rule, event, target, message, _culprit())
    raise GuardRefusal(message, rule)


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str):
        return any(letter in mode for letter in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _check_path(session: GuardSession, event: str, raw: object, writing: bool) -> None:
    if not isinstance(raw, (str, bytes, os.PathLike)):
        return  # an already-open descriptor (its path was judged when it was opened), or no path
    try:
        text = os.fsdecode(raw)
    except TypeError:  # a PathLike whose __fspath__ gives neither str nor bytes
        return
    absolute = os.path.abspath(text)
    real = os.path.realpath(absolute)
    policy = session.policy
    access = "write" if writing else "read"
    if _under_any(real, policy.withheld):
        _refuse(
            session,
            FILE_RULE,
            event,
            real,
            f"refused to {access} {real}: an isolated submission may not touch the validation data or the audit log",
        )
    if policy.is_training_data(absolute, real):
        _refuse(
            session,
            FILE_RULE,
            event,
            real,
            f"refused to {access} training data {real}: no training data may be accessed during evaluation",
        )
    allowed = policy.may_write(real) if writing else policy.may_read(real)
    if not allowed:
        _refuse(
            session,
            FILE_RULE,
            event,
            real,
            f"refused to {access} {real}: outside the artifact, validation, tokenizer, submission and output paths",
        )


def _on_open(session: GuardSession, event: str, args: tuple[Any, ...]) -> None:
    path, mode, flags = (tuple(args) + (None, None, None))[:3]
    _check_path(session, event, path, _is_write(mode, flags))


def _on_path_change(positions: tuple[int, ...]) -> Callable[[GuardSession, str, tuple[Any, ...]], None]:
    def handler(session: GuardSession, event: str, args: tuple[Any, ...]) -> None:
        for position in positions:
            if position < len(args):
                _check_path(session, event, args[position], writing=True)

    return handler


def _address(value: object) -> str:
    if isinstance(value, tuple) and len(value) >= 2:
        return f"{value[0]}:{value[1]}"
    return os.fsdecode(value) if isinstance(value, (str, bytes)) else repr(value)


# Audit events of the standard library's protocol clients: (self, host, port, ...)
_LIBRARY_CONNECTS = (
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
    "poplib.connect",
    "nntplib.connect",
    "imaplib.open",
    "telnetlib.Telnet.open",
)


def _network_target(event: str, args: tuple[Any, ...]) -> str:
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        return _address(args[1]) if len(args) > 1 else "?"
    if event == "socket.getaddrinfo":
        return f"{args[0]}:{args[1]}"
    if event in _LIBRARY_CONNECTS:
        return f"{args[1]}:{args[2]}" if len(args) > 2 else repr(args)
    if event == "urllib.Request":
        return str(args[0])
    return str(args[0]) if args else "?"


def _on_network(session: GuardSession, event: str, args: tuple[Any, ...]) -> None:
    target = _network_target(event, args)
    _refuse(
        session,
        NETWORK_RULE,
        event,
        target,
        f"refused network access ({event} {target}): evaluation must not use the network",
    )


def _process_target(event: str, args: tuple[Any, ...]) -> str:
    if event == "subprocess.Popen":
        command = args[1] if len(args) > 1 else args[0]
        return command if isinstance(command, str) else " ".join(os.fsdecode(str(a)) for a in (command or ()))
    if event in ("os.exec", "os.posix_spawn", "pty.spawn"):
        return " ".join(str(a) for a in (args[1] if len(args) > 1 else args[0] or ()))
    if event == "os.spawn":
        return " ".join(str(a) for a in (args[2] if len(args) > 2 else ()))
    return os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes)) else event


def _on_process(session: GuardSession, event: str, args: tuple[Any, ...]) -> None:
    target = _process_target(event, args)
    _refuse(
        session,
        PROCESS_RULE,
        event,
        target,
        f"refused to spawn a process ({event}: {target}): a child process runs outside the guards",
    )


_HANDLERS: dict[str, Callable[[GuardSession, str, tuple[Any, ...]], None]] = {
    "open": _on_open,
    "os.remove": _on_path_change((0,)),
    "os.rmdir": _on_path_change((0,)),
    "os.mkdir": _on_path_change((0,)),
    "os.rename": _on_path_change((0, 1)),
    "os.truncate": _on_path_change((0,)),
    "os.chmod": _on_path_change((0,)),
    "os.link": _on_path_change((0, 1)),
    "os.symlink": _on_path_change((1,)),
    "shutil.rmtree": _on_path_change((0,)),
    **{
        event: _on_network
        for event in (
            "socket.connect",
            "socket.bind",
            "socket.sendto",
            "socket.sendmsg",
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyaddr",
            "socket.getnameinfo",
            "urllib.Request",
            *_LIBRARY_CONNECTS,
            "webbrowser.open",
        )
    },
    **{
        event: _on_process
        for event in (
            "subprocess.Popen",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.fork",
            "os.forkpty",
            "os.startfile",
            "pty.spawn",
        )
    },
}


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    """The process-wide hook: inert unless a guard is active; never re-entered by its own work."""
    session = _ACTIVE
    if session is None:
        return
    handler = _HANDLERS.get(event)
    if handler is None or getattr(_IN_HOOK, "busy", False):
        return
    _IN_HOOK.busy = True
    try:
        handler(session, event, args)
    finally:
        _IN_HOOK.busy = False


def _install_hook() -> None:
    global _HOOK_INSTALLED, _INTERNAL_ROOTS
    with _INSTALL_LOCK:
        if _HOOK_INSTALLED:
            return
        _INTERNAL_ROOTS = tuple(_python_roots()) + (str(Path(__file__).resolve().parents[1]),)
        sys.addaudithook(_audit_hook)
        _HOOK_INSTALLED = True


@contextlib.contextmanager
def guarded(
    allowed_paths: Sequence[Path | str],
    forbidden_paths: Sequence[Path | str] = (),
    training_globs: Sequence[str] = TRAINING_GLOBS,
    withheld_paths: Sequence[Path | str] = (),
) -> Iterator[GuardSession]:
    """Run the block under the guards; the yielded session's ``findings`` lists every refusal.

    ``allowed_paths``: the artifact, tokenizer, validation shards (read-only files) and the
    submission and output folders (read-write). ``forbidden_paths``: training shards or folders,
    refused even when they sit inside an allowed folder. ``withheld_paths``: files and folders the
    isolated child may not touch (the validation shards, the output folder). Guards do not nest.
    """
    global _ACTIVE
    if _ACTIVE is not None:
        raise UsageError("runtime guards are already active (guarded blocks do not nest)")
    policy = build_policy(allowed_paths, forbidden_paths, training_globs, withheld_paths)
    session = GuardSession(policy=policy)
    load_catalog()  # the rule pages are read now: a refusal recorded under the guards opens no file
    _install_hook()
    wrote_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    _ACTIVE = session
    try:
        yield session
    finally:
        _ACTIVE = None
        sys.dont_write_bytecode = wrote_bytecode
