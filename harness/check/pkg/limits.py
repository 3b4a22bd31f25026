"""PG303 (artifact size) and PG304 (time limits): when a package number may fail a submission.

Why so careful: the organizers accepted records whose own logs show 600.1 s of training (the
step in flight when the clock ran out), a 2,400 s single-GPU reproduction next to the 8-GPU
runs, a logged total over 16,000,000 bytes that counts uncompressed code while the folder ships
it compressed, and non-record submissions over the cap. What they accepted is not an error, so
a limit finding is an ``error`` only when the submission's own numbers leave no other reading:

- size: a record claim, and some scored log whose every reading of the artifact (its logged
  total; its logged compressed model plus the shipped ``train_gpt.py``; submission.json's bytes
  for that seed) is over the cap;
- time: a record claim, and every scored log over the limit by more than the in-flight step and
  by more than ``CLEAR_MARGIN`` (1 %: six seconds buy about 1 % more steps, the first overshoot
  that could move a score; 0.1 s cannot), none of them declaring fewer than 8 GPUs.

Anything else over a limit is a ``warning`` that says which reading disagrees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.catalog import finding
from harness.check.pkg.folder import ENTRY_FILE, JSON_FILE, PackageFolder
from harness.check.pkg.logs import TrainingLog
from harness.findings import Finding
from harness.submission import Submission

SIZE_LIMIT_BYTES = 16_000_000
TIME_LIMIT_MS = 600_000.0
CLEAR_MARGIN = 0.01  # over the limit by more than this fraction is clearly over
MIN_IN_FLIGHT_MS = 1_000.0  # the last step plus the clock check around it, at least one second
REFERENCE_GPUS = 8  # the limits are for 8xH100

_OVER = f"over the {SIZE_LIMIT_BYTES:,}-byte cap (decimal 16 MB)"


@dataclass(frozen=True)
class SizeReading:
    what: str
    size_bytes: int
    file: str
    line: int
    counter_only: bool = False  # may show the artifact under the cap; never raises a finding itself


def _shipped_entry_bytes(submission: Submission) -> int | None:
    entry = submission.root / ENTRY_FILE
    try:
        return entry.stat().st_size if ENTRY_FILE in submission.files and entry.is_file() else None
    except OSError:
        return None


def _log_readings(log: TrainingLog, shipped: int | None, package: PackageFolder) -> list[SizeReading]:
    readings = []
    total = log.artifact_size()
    if total is not None:
        label = f" {total.label}" if total.label else ""
        readings.append(
            SizeReading(f"logged total (Total submission size{label})", total.size_bytes, log.path, total.line)
        )
    model = log.model_size()
    if model is not None and total is None and log.code_sizes:
        code = log.code_sizes[-1].size_bytes
        what = f"logged model ({model.label}) + logged code ({code:,})"
        readings.append(SizeReading(what, model.size_bytes + code, log.path, model.line))
    if model is not None and shipped is not None:
        # The shipped file is sometimes a compressed shim of the logged source, sometimes a
        # launcher, sometimes a readable copy of a compressed original (#1953): it can only
        # argue that the artifact is smaller than the log's own count, not that it is larger.
        what = f"logged model ({model.label}) + shipped {ENTRY_FILE} ({shipped:,})"
        readings.append(SizeReading(what, model.size_bytes + shipped, log.path, model.line, counter_only=True))
    # submission.json's top-level sizes that by their meaning cover every scored log:
    # ``artifact_bytes_max`` always, ``bytes_total`` when a single log is scored (#207 logs
    # 16,032,236 bytes and claims a 15,704,854-byte re-export: readings that disagree).
    covering = ["artifact_bytes_max"] + (["bytes_total"] if len(package.claim_logs() or package.logs) == 1 else [])
    return readings + _json_readings(package, covering, lambda seed: seed == str(log.seed))


def _json_readings(package: PackageFolder, keys: list[str], of_seed: Callable[[str], bool]) -> list[SizeReading]:
    """submission.json's sizes: the top-level ``keys`` (they may count something else, so they
    only ever argue for the artifact), and the seed_results' artifact_bytes of the seeds asked for."""
    data = package.submission_json
    if data is None:
        return []
    readings = [
        SizeReading(f"submission.json {key}", data.data[key], JSON_FILE, data.line_of(key), counter_only=True)
        for key in keys
        if isinstance(data.data.get(key), int) and not isinstance(data.data.get(key), bool)
    ]
    return readings + [
        SizeReading(f"submission.json seed_results['{c.seed}'].artifact_bytes", c.artifact_bytes, JSON_FILE, c.line)
        for c in data.seed_claims
        if c.artifact_bytes is not None and of_seed(c.seed)
    ]


def artifact_size(submission: Submission, package: PackageFolder, record: bool) -> list[Finding]:
    shipped = _shipped_entry_bytes(submission)
    findings = []
    logs = package.claim_logs() or package.logs
    for log in logs:
        readings = _log_readings(log, shipped, package)
        over = [r for r in readings if r.size_bytes > SIZE_LIMIT_BYTES]
        if not any(not r.counter_only for r in over):
            continue
        over.sort(key=lambda r: r.counter_only)
        under = [r for r in readings if r.size_bytes <= SIZE_LIMIT_BYTES]
        first = over[0]
        message = f"{first.what} is {first.size_bytes:,} bytes, {_OVER}"
        if under:
            message += (
                f"; but {under[0].what} gives {under[0].size_bytes:,} bytes: say how the artifact is "
                "counted (code bytes + compressed model bytes)"
            )
        elif not record:
            message += " (not a record claim: the cap decides leaderboard records)"
        decisive = record and not under
        findings.append(finding("PG303", first.file, first.line, message, when=None if decisive else "not-decisive"))
    if findings:
        return findings
    # submission.json's own numbers: they may count something else (uncompressed code, MiB),
    # so over the cap they ask a reviewer to confirm, whether or not a log prints a size.
    logged = any(not r.counter_only for log in logs for r in _log_readings(log, shipped, package))
    for reading in _json_readings(package, ["bytes_total", "artifact_bytes_max"], lambda seed: True):
        if reading.size_bytes > SIZE_LIMIT_BYTES:
            why = "the logs print a size under it" if logged else "no log prints the artifact size to confirm it"
            message = f"{reading.what} is {reading.size_bytes:,} bytes, {_OVER}; {why}"
            findings.append(finding("PG303", reading.file, reading.line, message, when="not-decisive"))
    return findings


def _in_flight_ms(log: TrainingLog) -> float:
    """The clock is read between steps, so the step in flight at 600 s finishes: two average
    steps (the last one is often slower) and at least a second."""
    return max(2.0 * (log.last_step_avg_ms or 0.0), MIN_IN_FLIGHT_MS)


def _fewer_gpus(log: TrainingLog) -> int | None:
    """The world size a log declares when it is under the 8 GPUs the limit is defined on: such
    a run (a single-A100 development run, #1527; a one-GPU reproduction, 2026-03-17) takes
    longer by construction, and its clock says nothing about the 8xH100 run."""
    value = log.hparams.get("world_size", "").strip()
    return int(value) if value.isdigit() and 0 < int(value) < REFERENCE_GPUS else None


def time_limits(package: PackageFolder, record: bool) -> list[Finding]:
    """Training time per log, and the reported score's evaluation time; see the module doc for
    when either is an error."""
    logs = package.claim_logs() or package.logs
    trained = [
        (
            log,
            ms,
            log.train_time_line,
            f"training ran {ms / 1000:.1f} s (train_time:{ms:.0f}ms), over the "
            f"600 s limit and the in-flight step ({_in_flight_ms(log):.0f} ms)",
        )
        for log in logs
        if (ms := log.train_time_ms) is not None
    ]
    evaluated = [
        (log, ms, headline.line, f"evaluation of {headline.family} took {ms / 1000:.1f} s, over the 600 s limit")
        for log in logs
        if (headline := log.headline()) is not None and (ms := headline.eval_time_ms) is not None
    ]
    eval_over = _over_limit(record, evaluated, "evaluated", lambda log: 0.0)
    return _over_limit(record, trained, "trained", _in_flight_ms) + (eval_over or _eval_total_info(logs))


def _over_limit(
    record: bool, timed: list[tuple[TrainingLog, float, int, str]], verb: str, allowance: Callable[[TrainingLog], float]
) -> list[Finding]:
    """The logs over the limit by more than their allowance (the module doc says when that is an error)."""
    over = [(log, ms, line, message) for log, ms, line, message in timed if ms > TIME_LIMIT_MS + allowance(log)]
    margin = CLEAR_MARGIN * TIME_LIMIT_MS
    clear = [ms > TIME_LIMIT_MS + max(allowance(log), margin) and _fewer_gpus(log) is None for log, ms, _, _ in over]
    decisive = record and bool(over) and len(over) == len(timed) and all(clear)
    findings = []
    for log, _, line, message in over:
        if not decisive:
            message += _why_not_decisive(record, len(over), len(timed), verb, _fewer_gpus(log))
        findings.append(finding("PG304", log.path, line, message, when=None if decisive else "not-decisive"))
    return findings


def _why_not_decisive(record: bool, over: int, logged: int, verb: str, gpus: int | None) -> str:
    if not record:
        return " (not a record claim)"
    if gpus is not None:
        return f" on world_size {gpus}: the limit is for {REFERENCE_GPUS}xH100, show the run the claim is for"
    if over < logged:
        return f"; {logged - over} other scored log(s) {verb} within it: say which runs back the claim"
    return f" by less than {CLEAR_MARGIN:.0%}: check the timing"


def _eval_total_info(logs: list[TrainingLog]) -> list[Finding]:
    """Several final evaluations adding up past 600 s says nothing by itself: diagnostics are
    often run outside the budget. Information for the reviewer, never a verdict."""
    findings = []
    for log in logs:
        families = log.families()
        total = sum(f.eval_time_ms or 0.0 for f in families)
        if total > TIME_LIMIT_MS:
            message = (
                f"final evaluations together took {total / 1000:.1f} s "
                f"({', '.join(f.family for f in families if f.eval_time_ms)}), over 600 s: "
                "show which of them the reported score needs"
            )
            findings.append(finding("PG304", log.path, families[-1].line, message, when="eval-total"))
    return findings
