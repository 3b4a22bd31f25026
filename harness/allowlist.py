"""A reviewer's allowlist: findings accepted after reading the code, kept outside the submission.

Why a separate file: a submitter must not be able to silence a finding (suppression comments
inside a submission are ignored and reported as PG001 info), but a reviewer who has checked a
finding by hand needs to record that decision, with a reason, where the next run picks it up.
Allowlisted findings leave the verdict but stay in every report as "allowlisted".

File format (TOML, or JSON with the same shape)::

    [[allow]]
    rule = "PG104"                                  # required, one rule ID
    path = "records/track_10min_16mb/2026-*/train_gpt.py*"   # required, a glob
    line = 212                                      # optional: only this line
    reason = "warm-up runs on torch.randint tokens" # required

``path`` is matched against ``<submission>/<file>`` exactly as the reports print it, relative
to the directory golf-check runs in (``records/x/y/train_gpt.py[decoded#1]`` for code decoded
from a shim — end the glob with ``*`` to cover it). ``*`` and ``?`` also match ``/``; ``[`` opens
a character class, so write ``[[]`` for a literal ``[``.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from harness.errors import UsageError
from harness.findings import Finding

_RULE_ID = re.compile(r"PG\d{3}")
_KEYS = {"rule", "path", "line", "reason"}


@dataclass(frozen=True)
class AllowEntry:
    rule: str
    path_glob: str
    line: int | None
    reason: str

    def matches(self, finding: Finding, location: str) -> bool:
        if finding.rule != self.rule:
            return False
        if self.line is not None and finding.line != self.line:
            return False
        return fnmatchcase(location, self.path_glob)


@dataclass(frozen=True)
class Allowlist:
    entries: tuple[AllowEntry, ...]

    def reason_for(self, finding: Finding, location: str) -> str | None:
        """The reason of the first entry accepting this finding at ``location``, else None."""
        for entry in self.entries:
            if entry.matches(finding, location):
                return entry.reason
        return None


def finding_location(submission_path: str, base_dir: str, finding: Finding) -> str:
    """``<submission>/<file>`` as reports print it; the submission path alone when the finding
    names no file or the submission is that single file."""
    if not finding.file:
        return submission_path
    if submission_path.endswith(".py") and submission_path.rsplit("/", 1)[-1] == finding.file:
        return submission_path
    return f"{base_dir}/{finding.file}" if base_dir else finding.file


def load_allowlist(path: Path) -> Allowlist:
    where = f"allowlist {path}"
    try:
        raw_text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read: {exc}") from None
    data = _parse(where, path, raw_text)
    if not isinstance(data, dict) or not isinstance(data.get("allow"), list):
        raise UsageError(f"{where}: expected a list of entries under 'allow'")
    raw_entries = data["allow"]
    unknown_top = sorted(set(data) - {"allow"})
    if unknown_top:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown_top)}")
    return Allowlist(entries=tuple(_entry(where, index, raw) for index, raw in enumerate(raw_entries, 1)))


def _parse(where: str, path: Path, text: str) -> object:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None


def _entry(where: str, index: int, raw: object) -> AllowEntry:
    prefix = f"{where}: entry {index}"
    if not isinstance(raw, dict):
        raise UsageError(f"{prefix}: must be a table/object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UsageError(f"{prefix}: unknown key(s) {', '.join(unknown)}")
    rule = raw.get("rule")
    if not isinstance(rule, str) or not _RULE_ID.fullmatch(rule):
        raise UsageError(f"{prefix}: 'rule' must be a rule ID like PG104")
    glob = raw.get("path")
    if not isinstance(glob, str) or not glob.strip():
        raise UsageError(f"{prefix}: 'path' must be a non-empty glob")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError(f"{prefix}: 'reason' must say why the finding is accepted")
    line = raw.get("line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, int) or line < 1):
        raise UsageError(f"{prefix}: 'line' must be a positive integer")
    return AllowEntry(rule=rule, path_glob=glob.strip(), line=line, reason=reason.strip())
