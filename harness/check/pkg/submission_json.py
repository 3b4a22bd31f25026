"""Load and type-check ``submission.json`` (PG402).

Why keep the literal digits: PG403 compares the claimed ``val_bpb`` with the logs allowing for
rounding to the decimals *shown*, and ``1.2244`` vs ``1.22436570`` can only be judged when we
know the claim had four decimals — so numbers are parsed as ``Decimal``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

from harness.check.pkg.logs import decimals_of

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class JsonProblem:
    message: str
    line: int


@dataclass(frozen=True)
class Claim:
    """A number claimed in submission.json with the decimals it was written with."""

    value: float
    decimals: int
    line: int


@dataclass
class SeedClaim:
    seed: str
    line: int
    val_bpb: Claim | None = None
    val_loss: Claim | None = None
    artifact_bytes: int | None = None


@dataclass
class SubmissionJson:
    data: dict[str, Any]
    text: str
    problems: list[JsonProblem] = field(default_factory=list)
    seed_claims: list[SeedClaim] = field(default_factory=list)

    def line_of(self, key: str) -> int:
        """Line of the first ``"key":`` in the raw text (1 when absent), for findings to point at."""
        match = re.search(r'"' + re.escape(key) + r'"\s*:', self.text)
        return self.text.count("\n", 0, match.start()) + 1 if match else 1

    def claim(self, key: str) -> Claim | None:
        return _claim(self.data.get(key), self.line_of(key), _is_number)

    @property
    def declared_seeds(self) -> list[str]:
        """Seeds named by ``seeds``, else by ``seed_results``."""
        return _listed_seeds(self.data.get("seeds")) or [claim.seed for claim in self.seed_claims]


class SubmissionJsonUnreadable(Exception):
    """Not JSON at all, or not an object; carries the line of the problem."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def load_submission_json(text: str) -> SubmissionJson:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise SubmissionJsonUnreadable(f"submission.json is not valid JSON: {exc.msg}", exc.lineno) from None
    except RecursionError:
        raise SubmissionJsonUnreadable("submission.json nests too deeply to read", 1) from None
    if not isinstance(data, dict):
        raise SubmissionJsonUnreadable("submission.json must be a JSON object", 1)
    parsed = SubmissionJson(data=data, text=text)
    _check_fields(parsed)
    _collect_seed_results(parsed)
    return parsed


def _problem(parsed: SubmissionJson, key: str, message: str) -> None:
    parsed.problems.append(JsonProblem(message, parsed.line_of(key)))


def _check_fields(parsed: SubmissionJson) -> None:
    data = parsed.data
    names = [key for key in ("name", "author") if key in data]
    if not names:
        _problem(parsed, "name", "submission.json needs 'name' or 'author' (who submits)")
    for key in (*names, "github_id"):
        if key in data and not _is_text(data[key]):
            _problem(parsed, key, f"'{key}' must be a non-empty string")
    for key in ("github_id", "val_bpb", "date"):
        if key not in data:
            _problem(parsed, key, f"submission.json needs '{key}'")
    for key, wrong in _wrong_types(data, _FIELD_TYPES):
        _problem(parsed, key, f"'{key}' {wrong}")
    if "seeds" in data and not _listed_seeds(data["seeds"]):
        seeds = _shown(data["seeds"])
        _problem(parsed, "seeds", f"'seeds' should list the seeds run (a list or an object keyed by seed), got {seeds}")
    if "compliance" in data and not isinstance(data["compliance"], dict):
        # Values inside the block may be numbers or notes (``"train_time_max_s": "599.6"``): only
        # a true-like value is a claim (PG406), anything else is information.
        _problem(parsed, "compliance", "'compliance' should be an object of named claims")


def _collect_seed_results(parsed: SubmissionJson) -> None:
    """``seed_results`` is ``{seed: {...}}`` in accepted records; a list of objects carrying
    ``seed`` is accepted too."""
    if "seed_results" not in parsed.data:
        return
    results = parsed.data["seed_results"]
    if isinstance(results, dict):
        entries: list[tuple[str, Any]] = [(str(seed), value) for seed, value in results.items()]
    elif isinstance(results, list) and all(isinstance(r, dict) and _is_int(r.get("seed")) for r in results):
        entries = [(str(int(r["seed"])), r) for r in results]
    else:
        _problem(parsed, "seed_results", "'seed_results' must map each seed to an object of its results")
        return
    for seed, result in entries:
        line = parsed.line_of(seed)
        if not seed.lstrip("+-").isdigit():
            continue  # a run variant (``1337_conservative``, #152; ``2024_5pct``, #568): nothing to check
        if not isinstance(result, dict):
            parsed.problems.append(JsonProblem(f"seed_results['{seed}'] must be an object", line))
            continue
        for key, wrong in _wrong_types(result, _SEED_FIELD_TYPES):
            parsed.problems.append(JsonProblem(f"seed_results['{seed}'].{key} {wrong}", line))
        bytes_claimed = result.get("artifact_bytes")
        parsed.seed_claims.append(
            SeedClaim(
                seed=str(int(seed)),
                line=line,
                val_bpb=_claim(result.get("val_bpb"), line, _is_positive_number),
                val_loss=_claim(result.get("val_loss"), line, _is_positive_number),
                artifact_bytes=bytes_claimed if _is_count(bytes_claimed) else None,
            )
        )


def _wrong_types(
    values: dict[str, Any], types: dict[str, tuple[Callable[[Any], bool], str]]
) -> Iterator[tuple[str, str]]:
    for key, (valid, what) in types.items():
        if key in values and not valid(values[key]):
            yield key, f"must be {what}, got {_shown(values[key])}"


def _claim(value: Any, line: int, valid: Callable[[Any], bool]) -> Claim | None:
    return Claim(float(value), decimals_of(str(value)), line) if valid(value) else None


def _listed_seeds(seeds: Any) -> list[str]:
    """The seeds a ``seeds`` list names, or an object keyed by seed holding each seed's results
    (#512, #779): both are shapes accepted submissions use. A seed is an integer or a string of
    digits (``"1337"``); other keys (``2024_5pct``) name a run variant, not a seed."""
    keys = list(seeds) if isinstance(seeds, dict) else seeds
    if not isinstance(keys, list):
        return []
    written = [str(key).strip() for key in keys if _is_int(key) or isinstance(key, str)]
    return [str(int(text)) for text in written if text.lstrip("+-").isdigit()]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_number(value: object) -> TypeGuard[int | Decimal]:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return False
    return math.isfinite(float(value))


def _is_positive_number(value: Any) -> bool:
    return _is_number(value) and float(value) > 0


def _is_nonnegative_number(value: Any) -> bool:
    return _is_number(value) and float(value) >= 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> TypeGuard[int]:
    return _is_int(value) and value >= 0


def _is_date(value: Any) -> bool:
    """``YYYY-MM-DD``, or an ISO timestamp with its time."""
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return bool(_DATE_ONLY.match(value)) or "T" in value or " " in value


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# What a field must hold when it is present.
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val_bpb": (_is_positive_number, "a positive number"),
    "date": (_is_date, "YYYY-MM-DD or an ISO timestamp"),
    **dict.fromkeys(("track", "hardware", "blurb", "pytorch_version"), (_is_text, "a non-empty string")),
    **dict.fromkeys(("val_loss", "val_bpb_std", "val_loss_std"), (_is_nonnegative_number, "a non-negative number")),
    **dict.fromkeys(("bytes_total", "bytes_code", "artifact_bytes_max"), (_is_count, "a whole number of bytes")),
}
_SEED_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("val_loss", "val_bpb", "step_avg_ms", "eval_time_s", "train_time_s"),
        (_is_positive_number, "a positive number"),
    ),
    **dict.fromkeys(("artifact_bytes", "steps", "bytes_total"), (_is_count, "a whole number")),
}
