"""Load and type-check ``submission.json`` (PG402).

Why keep the literal digits: PG403 compares the claimed ``val_bpb`` with the logs allowing for
rounding to the decimals *shown*, and ``1.2244`` vs ``1.22436570`` can only be judged when we
know the claim had four decimals — so numbers are parsed as ``Decimal``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

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
        return line_of_key(self.text, key)

    def claim(self, key: str) -> Claim | None:
        value = self.data.get(key)
        if not _is_number(value):
            return None
        return Claim(float(value), _decimals(value), self.line_of(key))

    @property
    def declared_seeds(self) -> list[str]:
        """Seeds named by ``seeds`` (a list, or an object keyed by seed as in #512 and #779),
        else by ``seed_results``. Keys that are not plain integers (``2024_5pct``) name a run
        variant, not a seed, and are left out."""
        seeds = self.data.get("seeds")
        if isinstance(seeds, dict):
            seeds = list(seeds)
        named = [_seed_text(s) for s in seeds] if isinstance(seeds, list) else []
        listed = [str(seed) for seed in named if seed is not None]
        return listed or [claim.seed for claim in self.seed_claims]

    @property
    def compliance(self) -> dict[str, Any]:
        block = self.data.get("compliance")
        return block if isinstance(block, dict) else {}


class SubmissionJsonUnreadable(Exception):
    """Not JSON at all, or not an object; carries the line of the problem."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def line_of_key(text: str, key: str) -> int:
    """Line of the first ``"key":`` in the raw text (1 when absent), for findings to point at."""
    match = re.search(r'"' + re.escape(key) + r'"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


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
    _check_required(parsed)
    _check_optional(parsed)
    _collect_seed_results(parsed)
    return parsed


def _problem(parsed: SubmissionJson, key: str, message: str) -> None:
    parsed.problems.append(JsonProblem(message, parsed.line_of(key)))


def _check_required(parsed: SubmissionJson) -> None:
    data = parsed.data
    names = [key for key in ("name", "author") if key in data]
    if not names:
        _problem(parsed, "name", "submission.json needs 'name' or 'author' (who submits)")
    for key in names:
        if not _is_text(data[key]):
            _problem(parsed, key, f"'{key}' must be a non-empty string")
    if "github_id" not in data:
        _problem(parsed, "github_id", "submission.json needs 'github_id'")
    elif not _is_text(data["github_id"]):
        _problem(parsed, "github_id", "'github_id' must be a non-empty string")
    if "val_bpb" not in data:
        _problem(parsed, "val_bpb", "submission.json needs 'val_bpb'")
    elif not _is_positive_number(data["val_bpb"]):
        _problem(parsed, "val_bpb", f"'val_bpb' must be a positive number, got {_shown(data['val_bpb'])}")
    if "date" not in data:
        _problem(parsed, "date", "submission.json needs 'date'")
    elif not _is_date(data["date"]):
        _problem(parsed, "date", f"'date' must be YYYY-MM-DD or an ISO timestamp, got {_shown(data['date'])}")


_TEXT_FIELDS = ("track", "hardware", "blurb", "pytorch_version")
_NUMBER_FIELDS = ("val_loss", "val_bpb_std", "val_loss_std")
_COUNT_FIELDS = ("bytes_total", "bytes_code", "artifact_bytes_max")


def _check_optional(parsed: SubmissionJson) -> None:
    data = parsed.data
    for key in _TEXT_FIELDS:
        if key in data and not _is_text(data[key]):
            _problem(parsed, key, f"'{key}' must be a non-empty string, got {_shown(data[key])}")
    for key in _NUMBER_FIELDS:
        if key in data and not _is_nonnegative_number(data[key]):
            _problem(parsed, key, f"'{key}' must be a non-negative number, got {_shown(data[key])}")
    for key in _COUNT_FIELDS:
        if key in data and not _is_count(data[key]):
            _problem(parsed, key, f"'{key}' must be a whole number of bytes, got {_shown(data[key])}")
    if "seeds" in data:
        # A list of seeds, or an object keyed by seed holding each seed's results (#512, #779):
        # both are shapes accepted submissions use. Other shapes name no seed we can check.
        seeds = data["seeds"]
        keys = list(seeds) if isinstance(seeds, dict) else seeds
        if not isinstance(keys, list) or not keys or not any(_seed_text(s) is not None for s in keys):
            _problem(
                parsed,
                "seeds",
                f"'seeds' should list the seeds run (a list or an object keyed by seed), got {_shown(seeds)}",
            )
    if "compliance" in data and not isinstance(data["compliance"], dict):
        # Values inside the block may be numbers or notes (``"train_time_max_s": "599.6"``): only
        # a true-like value is a claim (PG406), anything else is information.
        _problem(parsed, "compliance", "'compliance' should be an object of named claims")


_SEED_NUMBER_FIELDS = ("val_loss", "val_bpb", "step_avg_ms", "eval_time_s", "train_time_s")
_SEED_COUNT_FIELDS = ("artifact_bytes", "steps", "bytes_total")


def _collect_seed_results(parsed: SubmissionJson) -> None:
    """``seed_results`` is ``{seed: {...}}`` in accepted records; a list of objects carrying
    ``seed`` is accepted too."""
    if "seed_results" not in parsed.data:
        return
    results = parsed.data["seed_results"]
    entries: list[tuple[str, Any]] = []
    if isinstance(results, dict):
        entries = [(str(seed), value) for seed, value in results.items()]
    elif isinstance(results, list) and all(isinstance(r, dict) and _is_int(r.get("seed")) for r in results):
        entries = [(str(int(r["seed"])), r) for r in results]
    else:
        _problem(parsed, "seed_results", "'seed_results' must map each seed to an object of its results")
        return
    for seed, result in entries:
        line = line_of_key(parsed.text, seed)
        if not seed.lstrip("+-").isdigit():
            continue  # a run variant (``1337_conservative``, #152; ``2024_5pct``, #568): nothing to check
        if not isinstance(result, dict):
            parsed.problems.append(JsonProblem(f"seed_results['{seed}'] must be an object", line))
            continue
        claim = SeedClaim(seed=str(int(seed)), line=line)
        for key in _SEED_NUMBER_FIELDS:
            if key in result and not _is_positive_number(result[key]):
                parsed.problems.append(
                    JsonProblem(
                        f"seed_results['{seed}'].{key} must be a positive number, got {_shown(result[key])}", line
                    )
                )
        for key in _SEED_COUNT_FIELDS:
            if key in result and not _is_count(result[key]):
                parsed.problems.append(
                    JsonProblem(f"seed_results['{seed}'].{key} must be a whole number, got {_shown(result[key])}", line)
                )
        if _is_positive_number(result.get("val_bpb")):
            claim.val_bpb = Claim(float(result["val_bpb"]), _decimals(result["val_bpb"]), line)
        if _is_positive_number(result.get("val_loss")):
            claim.val_loss = Claim(float(result["val_loss"]), _decimals(result["val_loss"]), line)
        if _is_count(result.get("artifact_bytes")):
            claim.artifact_bytes = int(result["artifact_bytes"])
        parsed.seed_claims.append(claim)


def _seed_text(value: Any) -> int | None:
    """A seed written as an integer or as a string of digits (``"1337"``)."""
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


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


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if _DATE_ONLY.match(value):
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return False
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value or " " in value


def _decimals(value: Any) -> int:
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return max(0, -exponent) if isinstance(exponent, int) else 0
    return 0


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
