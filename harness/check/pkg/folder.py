"""Read the non-code parts of a submission folder once: README, submission.json, training logs.

Why one reader: every package check (PG303, PG304, PG401–PG406) looks at the same logs and the
same claims; reading them here keeps each check a comparison and nothing else. Reading never
runs anything: logs and JSON are text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from harness.check.pkg.logs import TrainingLog, parse_log, read_log_text
from harness.check.pkg.submission_json import SubmissionJson, SubmissionJsonUnreadable, load_submission_json
from harness.submission import Submission

ENTRY_FILE = "train_gpt.py"
JSON_FILE = "submission.json"
LOG_SUFFIXES = (".log", ".txt")
_NOT_LOGS = frozenset({"requirements.txt", "readme.txt", "license.txt", "notes.txt"})
_NON_RECORD_MARKERS = ("non_record", "non-record", "nonrecord", "unlimited")
MAX_TEXT_BYTES = 4 * 1024 * 1024  # README and submission.json are small; cap hostile ones


@dataclass
class PackageFolder:
    submission: Submission
    readme: str | None = None
    submission_json: SubmissionJson | None = None
    json_error: SubmissionJsonUnreadable | None = None
    logs: list[TrainingLog] = field(default_factory=list)  # training logs only, by path

    def claim_logs(self) -> list[TrainingLog]:
        """The logs backing the claim: those with a final score, restricted to the seeds
        submission.json declares when it declares any (logs without a known seed are kept)."""
        scored = [log for log in self.logs if log.headline() is not None]
        declared = set(self.submission_json.declared_seeds) if self.submission_json else set()
        if declared:
            scored = [log for log in scored if log.seed is None or str(log.seed) in declared]
        return scored

    def is_record_claim(self) -> bool:
        """Records live under ``records/track_10min_16mb``; the non-record and unlimited-compute
        tracks waive the time limit and the seed count, and say so in the folder path or in
        submission.json's ``track``."""
        markers = [part.lower() for part in self.submission.root.parts[-3:]]
        track = self.submission_json.data.get("track") if self.submission_json else None
        if isinstance(track, str):
            markers.append(track.lower())
        return not any(marker in text for text in markers for marker in _NON_RECORD_MARKERS)


def read_package(submission: Submission) -> PackageFolder:
    folder = PackageFolder(submission=submission)
    files = set(submission.files)
    readme = next((name for name in sorted(files) if name.lower() == "readme.md"), None)
    if readme is not None:
        folder.readme = _read_text(submission, readme, MAX_TEXT_BYTES)
    if JSON_FILE in files:
        text = _read_text(submission, JSON_FILE, MAX_TEXT_BYTES)
        try:
            folder.submission_json = load_submission_json(text if text is not None else "")
        except SubmissionJsonUnreadable as exc:
            folder.json_error = exc
    for name in sorted(files):
        path = PurePosixPath(name)
        if path.suffix.lower() not in LOG_SUFFIXES or path.name.lower() in _NOT_LOGS:
            continue
        try:
            log = parse_log(read_log_text(submission.root / name), name)
        except OSError:
            continue  # vanished or unreadable since loading: nothing to compare
        if log.is_training_log:
            folder.logs.append(log)
    return folder


def _read_text(submission: Submission, name: str, limit: int) -> str | None:
    try:
        with (submission.root / name).open("rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None
