"""PG405: a one-sided Welch t-test of a new record against the prior frontier.

Why our own Student-t: the checker must stay light (no scipy, never torch). The t tail comes
from the regularized incomplete beta function, evaluated with Lentz's continued fraction —
accurate to ~1e-12, far below what a p-value threshold needs.

Two readings are reported because the challenge used two (rules-research Q7): the README's
"beat the record by ≥ 0.005 nats at p < 0.01", and the final leaderboard audits' "p < 0.25,
no margin".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, variance

from harness.catalog import finding
from harness.check.pkg.folder import JSON_FILE, PackageFolder
from harness.check.pkg.logs import NUMBER
from harness.errors import HarnessError
from harness.findings import Finding

README_MARGIN_NATS = 0.005
README_ALPHA = 0.01
LEADERBOARD_ALPHA = 0.25


@dataclass(frozen=True)
class WelchResult:
    delta: float  # mean(frontier) - mean(candidate): positive means the candidate is better
    t: float
    df: float
    p_value: float  # one-sided: P(improvement <= margin) under the null


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for 0 <= x <= 1, a, b > 0."""
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 400):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return result


def student_t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (df may be fractional)."""
    tail = 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return tail if t >= 0 else 1.0 - tail


def welch_one_sided(frontier: list[float], candidate: list[float], margin: float) -> WelchResult:
    """Test H1: mean(frontier) - mean(candidate) > margin, with unequal variances (each side has
    at least two values: the caller checks)."""
    delta = fmean(frontier) - fmean(candidate)
    var_f, var_c = variance(frontier) / len(frontier), variance(candidate) / len(candidate)
    standard_error = math.sqrt(var_f + var_c)
    if standard_error == 0.0:
        p_value = 0.0 if delta > margin else 1.0
        return WelchResult(delta, math.copysign(math.inf, delta - margin), math.inf, p_value)
    t = (delta - margin) / standard_error
    df = (var_f + var_c) ** 2 / (
        (var_f**2 / (len(frontier) - 1) if var_f else 0.0) + (var_c**2 / (len(candidate) - 1) if var_c else 0.0)
    )
    return WelchResult(delta, t, df, student_t_upper_tail(t, df))


def load_frontier(path: Path) -> list[float]:
    """Per-seed ``val_loss`` of the prior record.

    Accepted forms: a JSON list of numbers; a JSON object with ``val_losses``/``val_loss`` (a
    list) or ``seed_results`` (the prior record's own submission.json); or text with one number
    per line / separated by commas (``#`` starts a comment).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read frontier file {path}: {exc.__class__.__name__}") from None
    values = _frontier_from_json(text)
    if values is None:
        tokens = [token for raw in text.splitlines() for token in re.split(r"[\s,;]+", raw.split("#", 1)[0]) if token]
        bad = next((token for token in tokens if not re.fullmatch(NUMBER, token)), None)
        if bad is not None:
            raise HarnessError(f"frontier file {path}: '{bad[:40]}' is not a number")
        values = [float(token) for token in tokens]
    if len(values) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise HarnessError(f"frontier file {path}: need at least two positive per-seed val_loss values")
    return values


def _frontier_from_json(text: str) -> list[float] | None:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(data, dict):
        listed = [data[key] for key in ("val_losses", "val_loss") if isinstance(data.get(key), list)]
        results = data.get("seed_results")
        results = list(results.values()) if isinstance(results, dict) else results
        if listed:
            data = listed[0]
        elif isinstance(results, list):
            data = [result.get("val_loss") for result in results if isinstance(result, dict)]
    if isinstance(data, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        return [float(v) for v in data]
    if isinstance(data, (list, dict)):
        raise HarnessError("frontier JSON must be a list of per-seed val_loss numbers or carry seed_results")
    return None


def significance(frontier_file: Path, package: PackageFolder, family: str | None) -> list[Finding]:
    anchor = package.submission_json.line_of("val_loss") if package.submission_json else 0
    file = JSON_FILE if package.submission_json else ""
    try:
        frontier = load_frontier(frontier_file)
    except HarnessError as exc:
        return [finding("PG405", file, anchor, f"significance not tested: {exc}")]
    scores = [log.family(family) for log in package.claim_logs()] if family else []
    losses = [score.val_loss for score in scores if score is not None]
    if len(losses) < 2:
        message = f"significance not tested: need >= 2 per-seed val_loss values in the logs, found {len(losses)}"
        return [finding("PG405", file, anchor, message)]
    readme = welch_one_sided(frontier, losses, README_MARGIN_NATS)
    board = welch_one_sided(frontier, losses, 0.0)
    readme_met = readme.delta >= README_MARGIN_NATS and readme.p_value < README_ALPHA
    board_met = board.delta > 0 and board.p_value < LEADERBOARD_ALPHA
    message = (
        f"Δ = {readme.delta:+.5f} nats vs the frontier ({len(losses)} vs {len(frontier)} seeds, {family}); "
        f"README rule (>= {README_MARGIN_NATS} nats at p < {README_ALPHA}): one-sided Welch p = {readme.p_value:.4g}"
        f" (t = {readme.t:.3f}, df = {readme.df:.2f}) — {'met' if readme_met else 'NOT met'}; "
        f"final-leaderboard reading (p < {LEADERBOARD_ALPHA}, no margin): p = {board.p_value:.4g} — "
        f"{'met' if board_met else 'NOT met'}"
    )
    return [finding("PG405", file, anchor, message, when="margin-met" if readme_met else None)]
