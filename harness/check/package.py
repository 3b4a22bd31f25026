"""Package checks: what reviewers verified by hand in every submission folder.

PG401 required files · PG402 submission.json fields · PG403 claimed score vs the logs ·
PG303 artifact size · PG304 time limits · PG404 seeds of one configuration · PG405
significance against the prior record · PG406 compliance claims contradicted by findings.
(PG407, the pull-request shape, lives in ``harness/gate.py``: it is about a diff, not a folder.)

Why it runs last: PG406 compares the submission's claims with what the code rule families
found (``ctx.findings_so_far``). Nothing here parses or runs submission code: logs and JSON
are read as text, and "train_gpt.py compiles" means libcst parsed it for the other families.
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from harness.check.context import CheckContext
from harness.check.pkg.compliance import contradicted_rules, is_claimed
from harness.check.pkg.folder import ENTRY_FILE, JSON_FILE, PackageFolder, read_package
from harness.check.pkg.logs import FamilyScore, TrainingLog, config_differences
from harness.check.pkg.significance import (
    LEADERBOARD_ALPHA,
    README_ALPHA,
    README_MARGIN_NATS,
    load_frontier,
    welch_one_sided,
)
from harness.check.pkg.submission_json import Claim
from harness.errors import HarnessError
from harness.findings import Finding, Severity

SIZE_LIMIT_BYTES = 16_000_000
TIME_LIMIT_MS = 600_000.0
MIN_SEEDS = 3


def check(ctx: CheckContext) -> list[Finding]:
    if ctx.submission.single_file:
        return []
    package = read_package(ctx.submission)
    findings = required_files(ctx, package)
    findings += json_fields(package)
    chosen = chosen_family(package)
    findings += headline_matches(package, chosen)
    findings += artifact_size(ctx, package)
    if ctx.options.record_track and package.is_record_claim():
        findings += time_limits(package)
        findings += seed_count(package)
    if ctx.options.frontier is not None:
        findings += significance(ctx.options.frontier, package, chosen)
    findings += compliance_claims(package, ctx.findings_so_far + findings)
    return findings


def _error(rule: str, file: str, line: int, message: str) -> Finding:
    return Finding(rule=rule, severity=Severity.ERROR, file=file, line=line, message=message)


# PG401 ------------------------------------------------------------------------------------

def required_files(ctx: CheckContext, package: PackageFolder) -> list[Finding]:
    findings = []
    files = set(ctx.submission.files)
    if package.readme is None:
        findings.append(_error("PG401", "README.md", 0, "README.md is missing: the folder must explain the submission"))
    if JSON_FILE not in files:
        findings.append(_error("PG401", JSON_FILE, 0, "submission.json is missing"))
    if not package.logs:
        findings.append(
            _error("PG401", "", 0, "no training log: expected a *.log or *.txt file with step or final score lines")
        )
    if ENTRY_FILE not in files:
        return findings + entry_under_another_name(ctx)
    parsed = {id(p.source) for p in ctx.parsed}
    entries = ctx.submission.entry_sources
    reasons = [(s.display_name, "does not parse") for s in entries if id(s) not in parsed]
    reasons += [
        (f.file, f.message)
        for f in ctx.findings_so_far
        if f.rule == "PG000" and f.severity is Severity.ERROR and f.file.startswith(ENTRY_FILE)
    ]
    if not entries:
        reasons.append((ENTRY_FILE, "no readable source"))
    if reasons:
        # PG000 messages already name the file; ours do not.
        shown = "; ".join(dict.fromkeys(why if name in why else f"{name}: {why}" for name, why in reasons))
        findings.append(_error("PG401", reasons[0][0], 0, f"train_gpt.py does not compile ({shown})"))
    return findings


def entry_under_another_name(ctx: CheckContext) -> list[Finding]:
    """PG401's code part when the folder has no ``train_gpt.py`` (issue 12). Accepted records
    name their script ``train_gpt_v5.py`` or ``train_mamba3_hybrid.py``: the entry
    ``harness/entry.py`` chose (the loader's PG000 info names it) is held to what
    ``train_gpt.py`` is held to — it must parse — and its name is no finding. A folder without
    any Python file gets nothing here: the loader's PG000 warning already says no code rule
    could run, and the package checks above still read its README, submission.json and logs."""
    submission = ctx.submission
    if not submission.has_code:
        return []
    parsed = {id(p.source) for p in ctx.parsed}
    broken = {s.display_name.split("[", 1)[0] for s in submission.entry_sources if id(s) not in parsed}
    if not submission.entry_sources or not broken.issuperset(submission.entry_files):
        return []  # unreadable (PG000 says so), or another candidate entry parses
    names = ", ".join(sorted(broken))
    return [_error("PG401", sorted(broken)[0], 0, f"the entry script does not compile ({names}: does not parse)")]


# PG402 ------------------------------------------------------------------------------------

def json_fields(package: PackageFolder) -> list[Finding]:
    if package.json_error is not None:
        return [_error("PG402", JSON_FILE, package.json_error.line, str(package.json_error))]
    if package.submission_json is None:
        return []
    return [_error("PG402", JSON_FILE, p.line, p.message) for p in package.submission_json.problems]


# PG403 ------------------------------------------------------------------------------------

MIN_CLAIM_DECIMALS = 4  # logs print 4 decimals at least; a coarser claim is read at 4


def _agrees(claim: Claim, value: float, value_decimals: int) -> bool:
    """Equal once each side's rounding to the decimals it shows is allowed for. A claim is
    read at >= 4 decimals: "1.2" for a logged 1.2244 would show a better score than was run."""
    claim_decimals = max(claim.decimals, MIN_CLAIM_DECIMALS)
    tolerance = 0.5 * 10.0 ** -claim_decimals + 0.5 * 10.0 ** -value_decimals + 1e-12
    return abs(claim.value - value) <= tolerance


def _family_in(log: TrainingLog, family: str) -> FamilyScore | None:
    return next((f for f in log.families() if f.family == family), None)


def chosen_family(package: PackageFolder) -> str | None:
    """The score family the submission reports: the logs' headline family (latest stage) when
    submission.json agrees with it, otherwise another final family it agrees with; the headline
    family when nothing agrees (so the mismatch message names it)."""
    logs = package.claim_logs()
    if not logs:
        return None
    headline = logs[0].headline()
    common = [f.family for f in logs[0].families() if all(_family_in(log, f.family) for log in logs)]
    claim = package.submission_json.claim("val_bpb") if package.submission_json else None
    if claim is None or not common:
        return headline.family if headline else None
    ordered = sorted(common, key=lambda name: (name != headline.family, -_family_in(logs[0], name).priority))
    for name in ordered:
        mean, decimals = _mean_bpb(logs, name)
        if _agrees(claim, mean, decimals):
            return name
    return headline.family if headline and headline.family in common else ordered[0]


def _mean_bpb(logs: list[TrainingLog], family: str) -> tuple[float, int]:
    scores = [_family_in(log, family) for log in logs]
    present = [s for s in scores if s is not None]
    return fmean(s.val_bpb for s in present), min(s.bpb_decimals for s in present)


def headline_matches(package: PackageFolder, family: str | None) -> list[Finding]:
    data = package.submission_json
    logs = package.claim_logs()
    if data is None or not package.logs:
        return []
    if family is None:
        return [_error("PG403", JSON_FILE, data.line_of("val_bpb"),
                       "no log has a final score line (… val_loss:… val_bpb:…) to back the claimed val_bpb")]
    findings = []
    scores = [(log, _family_in(log, family)) for log in logs]
    scores = [(log, score) for log, score in scores if score is not None]
    for key, pick in (("val_bpb", lambda s: (s.val_bpb, s.bpb_decimals)),
                      ("val_loss", lambda s: (s.val_loss, s.loss_decimals))):
        claim = data.claim(key)
        if claim is None or not scores:
            continue
        mean = fmean(pick(s)[0] for _, s in scores)
        decimals = min(pick(s)[1] for _, s in scores)
        if not _agrees(claim, mean, decimals):
            shown = ", ".join(f"{log.path}:{s.line} {pick(s)[0]}" for log, s in scores)
            what = "the log" if len(scores) == 1 else f"the mean of {len(scores)} logs"
            findings.append(_error(
                "PG403", JSON_FILE, claim.line,
                f"submission.json {key} {claim.value} does not match {what}: {family} gives {mean:.8f} ({shown})",
            ))
    by_seed = {str(log.seed): (log, score) for log, score in scores if log.seed is not None}
    for seed_claim in data.seed_claims:
        if seed_claim.seed not in by_seed:
            continue
        log, score = by_seed[seed_claim.seed]
        for key, claim, value, decimals in (
            ("val_bpb", seed_claim.val_bpb, score.val_bpb, score.bpb_decimals),
            ("val_loss", seed_claim.val_loss, score.val_loss, score.loss_decimals),
        ):
            if claim is not None and not _agrees(claim, value, decimals):
                findings.append(_error(
                    "PG403", JSON_FILE, seed_claim.line,
                    f"seed_results['{seed_claim.seed}'].{key} {claim.value} does not match "
                    f"{log.path}:{score.line} ({family} {key}:{value})",
                ))
    return findings


# PG303 ------------------------------------------------------------------------------------

def artifact_size(ctx: CheckContext, package: PackageFolder) -> list[Finding]:
    findings = []
    over = f"over the {SIZE_LIMIT_BYTES:,}-byte limit (decimal 16 MB, not MiB)"
    for log in package.logs:
        size = log.artifact_size()
        if size is not None and size.size_bytes > SIZE_LIMIT_BYTES:
            label = f" {size.label}" if size.label else ""
            findings.append(_error("PG303", log.path, size.line,
                                   f"logged artifact (Total submission size{label}) is {size.size_bytes:,} bytes, {over}"))
    data = package.submission_json
    if data is not None:
        for key in ("bytes_total", "artifact_bytes_max"):
            value = data.data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > SIZE_LIMIT_BYTES:
                findings.append(_error("PG303", JSON_FILE, data.line_of(key),
                                       f"submission.json {key} is {value:,} bytes, {over}"))
        for seed_claim in data.seed_claims:
            if seed_claim.artifact_bytes is not None and seed_claim.artifact_bytes > SIZE_LIMIT_BYTES:
                findings.append(_error("PG303", JSON_FILE, seed_claim.line,
                                       f"seed_results['{seed_claim.seed}'].artifact_bytes is "
                                       f"{seed_claim.artifact_bytes:,} bytes, {over}"))
    entry = ctx.submission.root / ENTRY_FILE
    if ENTRY_FILE in ctx.submission.files and entry.is_file():
        shipped = entry.stat().st_size
        for log in package.logs:
            if log.code_sizes and log.code_sizes[-1].size_bytes != shipped:
                logged = log.code_sizes[-1]
                findings.append(Finding(
                    rule="PG303", severity=Severity.WARNING, file=log.path, line=logged.line,
                    message=f"logged code size {logged.size_bytes:,} bytes differs from the shipped train_gpt.py "
                            f"({shipped:,} bytes): the logged total may not count the code that is submitted",
                ))
    return findings


# PG304 ------------------------------------------------------------------------------------

def time_limits(package: PackageFolder) -> list[Finding]:
    """Training: the reference trainer checks its wall-clock cap between steps, so the step in
    flight at 600 s finishes (merged logs show 600,038 ms and 600,109 ms); we allow exactly one
    average step past 600 s and nothing more. Evaluation: the reported score's own
    ``eval_time`` must be ≤ 600 s (error); all final evaluations together over 600 s is a
    warning, since diagnostics printed for information may have been run outside the budget."""
    findings = []
    for log in package.logs:
        if log.train_time_ms is not None:
            grace = log.last_step_avg_ms or 0.0
            if log.train_time_ms > TIME_LIMIT_MS + grace:
                findings.append(_error(
                    "PG304", log.path, log.train_time_line,
                    f"training ran {log.train_time_ms / 1000:.1f} s (train_time:{log.train_time_ms:.0f}ms), over the "
                    f"600 s limit (allowing one in-flight step of {grace:.0f} ms)",
                ))
        families = log.families()
        headline = log.headline()
        if headline is not None and headline.eval_time_ms is not None and headline.eval_time_ms > TIME_LIMIT_MS:
            findings.append(_error(
                "PG304", log.path, headline.line,
                f"evaluation of {headline.family} took {headline.eval_time_ms / 1000:.1f} s, over the 600 s limit",
            ))
        elif families:
            total = sum(f.eval_time_ms or 0.0 for f in families)
            if total > TIME_LIMIT_MS:
                findings.append(Finding(
                    rule="PG304", severity=Severity.WARNING, file=log.path, line=families[-1].line,
                    message=f"final evaluations together took {total / 1000:.1f} s "
                            f"({', '.join(f.family for f in families if f.eval_time_ms)}), over 600 s: "
                            "show which of them the reported score needs",
                ))
    return findings


# PG404 ------------------------------------------------------------------------------------

def seed_count(package: PackageFolder) -> list[Finding]:
    logs = package.claim_logs()
    findings = []
    data = package.submission_json
    anchor = data.line_of("seeds") if data is not None and "seeds" in data.data else 0
    anchor_file = JSON_FILE if anchor else ""
    distinct = {str(log.seed) if log.seed is not None else log.path for log in logs}
    if len(distinct) < MIN_SEEDS:
        names = ", ".join(log.path for log in logs) or "none"
        findings.append(_error("PG404", anchor_file, anchor,
                               f"a record claim needs logs of >= {MIN_SEEDS} seeds of one configuration; "
                               f"found {len(distinct)} ({names})"))
    if data is not None:
        logged = {str(log.seed) for log in package.logs if log.seed is not None}
        for seed in data.declared_seeds:
            if seed not in logged:
                findings.append(_error("PG404", JSON_FILE, anchor or data.line_of(seed),
                                       f"submission.json lists seed {seed} but no training log has that seed"))
    with_config = [log for log in logs if log.hparams]
    for other in with_config[1:]:
        reference = with_config[0]
        differences = config_differences(reference, other)
        if differences:
            key, left, right = differences[0]
            more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
            findings.append(_error(
                "PG404", other.path, other.hparam_lines.get(key, 0),
                f"{other.path} differs from {reference.path} in '{key}' ({right} vs {left}){more}: "
                "all seeds must run the submitted configuration",
            ))
    return findings


# PG405 ------------------------------------------------------------------------------------

def significance(frontier_file: Path, package: PackageFolder, family: str | None) -> list[Finding]:
    anchor = package.submission_json.line_of("val_loss") if package.submission_json else 0
    file = JSON_FILE if package.submission_json else ""
    try:
        frontier = load_frontier(frontier_file)
    except HarnessError as exc:
        return [Finding("PG405", Severity.WARNING, file, anchor, f"significance not tested: {exc}")]
    losses = [s.val_loss for s in (_family_in(log, family) for log in package.claim_logs()) if s] if family else []
    if len(losses) < 2:
        return [Finding("PG405", Severity.WARNING, file, anchor,
                        f"significance not tested: need >= 2 per-seed val_loss values in the logs, found {len(losses)}")]
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
    return [Finding("PG405", Severity.INFO if readme_met else Severity.WARNING, file, anchor, message)]


# PG406 ------------------------------------------------------------------------------------

def compliance_claims(package: PackageFolder, findings: list[Finding]) -> list[Finding]:
    data = package.submission_json
    if data is None:
        return []
    claims = dict(data.compliance)
    claims.update({k: v for k, v in data.data.items() if k not in claims and contradicted_rules(k)})
    contradictions = []
    for flag, value in claims.items():
        rules = contradicted_rules(flag)
        if not rules or not is_claimed(value):
            continue
        against = [f for f in findings if f.rule in rules and f.severity is Severity.ERROR]
        if against:
            first = against[0]
            where = f"{first.file}:{first.line}" if first.file else "the package"
            more = f" (+{len(against) - 1} more)" if len(against) > 1 else ""
            contradictions.append(_error(
                "PG406", JSON_FILE, data.line_of(flag),
                f"compliance claim '{flag}: {str(value).lower()}' is contradicted by {first.rule} at {where}{more}",
            ))
    return contradictions
