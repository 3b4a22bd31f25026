"""What every command-line entry point shares: one-line errors, exit codes, safe output.

Why: a user (or the CI gate) must see one readable line and a distinct exit code for every
failure — bad arguments, unusable input, an internal bug — never a traceback, and a report
file must appear complete or not at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from harness.errors import EXIT_USAGE, HarnessError, MissingExtraError, UsageError

EVAL_EXTRA_MODULES = ("torch", "numpy", "sentencepiece", "zstandard")
EVAL_EXTRA_HINT = (
    "pip install torch==2.13.0 'golf-harness[eval]' (on a GPU machine, torch from the index that matches its CUDA)"
)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def require_eval_extra(program: str) -> None:
    """golf-eval and golf-train run models; a golf-check-only install (the core dependencies)
    lacks their libraries, so they stop with one line and exit 4 before any work instead of an
    ImportError deep inside. Finds the modules without importing them."""
    missing = [name for name in EVAL_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"{program} needs the eval extra ({missing[0]} is not installed): {EVAL_EXTRA_HINT}")


def run_cli(program: str, body: Callable[[], int]) -> int:
    """Run ``body`` and turn every failure into one line on stderr plus its exit code."""
    try:
        return body()
    except HarnessError as exc:
        print_error(program, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print_error(program, "interrupted; no report written")
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing useful can be printed.
        _silence_stdout()
        return EXIT_USAGE
    except SystemExit as exc:  # argparse --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 — the contract is one line, never a traceback
        print_error(program, f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_USAGE


def exit_now(code: int) -> NoReturn:
    """Leave with ``code`` once the output is flushed, skipping the interpreter's teardown.

    Why: a one-shot audit leaves hundreds of imported modules and classes behind; tearing
    them down one by one takes a few hundredths of a second that nobody waits for on purpose.
    Only for console entry points: everything was written (reports are written atomically
    and pools are shut down before ``main`` returns)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


def print_error(program: str, message: str) -> None:
    one_line = " ".join(message.split())
    print(f"{program}: error: {one_line}", file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        return


def write_output(text: str, output: Path | None) -> None:
    """Print to stdout, or replace ``output`` atomically so readers never see half a report."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = output.parent if str(output.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, output)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def parse_rule_patterns(raw: str | None) -> tuple[str, ...]:
    """``PG101,PG2`` → ("PG101", "PG2"): comma-separated rule IDs or ID prefixes."""
    if not raw:
        return ()
    return tuple(part.strip().upper() for part in raw.split(",") if part.strip())


def shutdown_distributed() -> None:
    """Tear down a torch process group if one is up, after every rank has arrived.

    Without the barrier a fast rank can destroy the group while another still talks to it.
    torch is never imported here: golf-check uses this module too."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(exit_code: int) -> None:
    """Leave the process with ``exit_code``; under torchrun without C++ static destructors.

    A gloo worker thread still being torn down there occasionally aborts a finished process
    ("terminate called without an active exception", SIGABRT) after all work, logs and
    reports are done — seen with both the trainer and the evaluator on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(exit_code)
