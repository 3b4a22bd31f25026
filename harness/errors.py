"""Error types and process exit codes shared by every command.

Why one place: each CLI maps failures to a *distinct* exit code so that scripts and the CI
gate can tell "the submission is illegal" apart from "the input was unusable" or "you called
it wrong", and none of them ever shows a traceback to the user.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1  # a submission failed (golf-check) / evaluation not audited (golf-eval)
EXIT_USAGE = 2  # bad command line or an internal error
EXIT_BAD_INPUT = 3  # input could not be used: missing data, corrupt shard/artifact, unparsable
EXIT_MISSING_EXTRA = 4  # an optional feature's libraries are not installed (e.g. golf-harness[report])
EXIT_SUBMISSION_PROCESS = 5  # golf-eval --isolate: the submission's child process failed or died
EXIT_NOT_A_REPOSITORY = 6  # golf-check --pull-requests: not run inside a git repository


class HarnessError(Exception):
    """An expected failure with a one-line message meant for the user.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; anything that is
    not a HarnessError is an internal error (exit 2) and is also reported on one line.
    """

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DataFormatError(HarnessError):
    """A challenge data file (token shard, tokenizer, artifact) is malformed or missing."""


class UsageError(HarnessError):
    """The command line asked for something impossible."""

    exit_code = EXIT_USAGE


class MissingExtraError(HarnessError):
    """An optional feature was asked for but its extra is not installed: the user can fix it
    with one ``pip install``, which the message names."""

    exit_code = EXIT_MISSING_EXTRA
