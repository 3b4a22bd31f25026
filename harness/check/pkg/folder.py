"""Read the non-code parts of a submission folder once: README, submission.json, training logs.

Why one reader: every package check (PG303, PG304, PG401–PG406) looks at the same logs and the
same claims; reading them here keeps each check a comparison and nothing else. Reading never
runs anything: logs and JSON are text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from harness.check.pkg.logs import TrainingLog, parse_log, read_text
from harness.check.pkg.submission_json import SubmissionJson, SubmissionJsonUnreadable, load_submission_json
from harness.submission import Submission

ENTRY_FILE = "train_gpt.py"
JSON_FILE = "submission.json"
LOG_SUFFIXES = (".log", ".txt")
_NOT_LOGS = frozenset({"requirements.txt", "readme.txt", "license.txt", "notes.txt"})
# How a folder says it is not a record attempt: the non-record and unlimited-compute tracks, or
# a work-in-progress / draft submission (#1110-era README titles, ``"track": "non-record-16mb"``).
_NON_RECORD = re.compile(r"non[-_ ]?record|unlimited|\bwork[-_ ]in[-_ ]progress\b|\bWIP\b|\bdraft\b", re.IGNORECASE)
_README_HEAD_LINES = 40  # the title and the summary under it, where a submission says what it is
# The naive baseline's score, the first record: a claim worse than it cannot be a record attempt
# whatever folder it sits in (#1653 claims 2.2585 from an RTX 4090 run under track_10min_16mb).
BASELINE_VAL_BPB = 1.2244
NOT_A_RECORD_MARGIN = 0.01  # clearly worse: seed noise around the baseline is ~0.001
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
        tracks waive the time limit and the seed count, and say so in the folder path, in
        submission.json's ``track``/``name``, or at the head of the README (a folder submitted
        on its own, outside the records tree, only says it there). A claimed val_bpb clearly
        worse than the naive baseline's is no record attempt either."""
        texts = list(self.submission.root.parts[-3:])
        claim = self.submission_json.claim("val_bpb") if self.submission_json is not None else None
        if claim is not None and claim.value > BASELINE_VAL_BPB + NOT_A_RECORD_MARGIN:
            return False
        if self.submission_json is not None:
            texts += [v for k, v in self.submission_json.data.items() if k in ("track", "name") and isinstance(v, str)]
        if self.readme is not None:
            texts.append("\n".join(self.readme.splitlines()[:_README_HEAD_LINES]))
        return not any(_NON_RECORD.search(text) for text in texts)


def read_package(submission: Submission) -> PackageFolder:
    folder = PackageFolder(submission=submission)
    files = set(submission.files)
    readme = next((name for name in sorted(files) if name.lower() == "readme.md"), None)
    if readme is not None:
        folder.readme = read_text(submission.root / readme, MAX_TEXT_BYTES)
    json_name = JSON_FILE if JSON_FILE in files else _json_variant(files)
    if json_name is not None:
        text = read_text(submission.root / json_name, MAX_TEXT_BYTES)
        try:
            folder.submission_json = load_submission_json(text or "")
        except SubmissionJsonUnreadable as exc:
            folder.json_error = exc
    for name in sorted(files):
        path = PurePosixPath(name)
        if path.suffix.lower() not in LOG_SUFFIXES or path.name.lower() in _NOT_LOGS:
            continue
        log = parse_log(read_text(submission.root / name) or "", name)  # unreadable: no training log
        if log.is_training_log:
            folder.logs.append(log)
    return folder


def _json_variant(files: set[str]) -> str | None:
    """A folder without ``submission.json`` sometimes ships it under a longer name
    (``submission_<variant>.json``): one such file at the top is read as the submission's."""
    variants = [name for name in files if "/" not in name and re.fullmatch(r"submission.*\.json", name, re.I | re.S)]
    return variants[0] if len(variants) == 1 else None
