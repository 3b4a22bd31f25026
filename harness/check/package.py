"""Package checks: what reviewers verified by hand in every submission folder.

PG401 required files · PG402 submission.json fields · PG403 claimed score vs the logs ·
PG303 artifact size · PG304 time limits · PG404 seeds of one configuration · PG405
significance against the prior record · PG406 compliance claims contradicted by findings.
(PG407, the pull-request shape, lives in ``harness/gate.py``: it is about a diff, not a folder.)

Severity policy (issue 12): the organizers' acceptance is the ground truth, and most folders
are non-record or work-in-progress submissions, so a package finding is a ``warning`` (or
``info``) unless the submission's own evidence clearly contradicts a record claim; each rule
page says when.

Why it runs last: PG406 compares the submission's claims with what the code rule families
found (``ctx.findings_so_far``). Nothing here parses or runs submission code: logs and JSON
are read as text, and "train_gpt.py compiles" means libcst parsed it for the other families.
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import fmean

from harness.catalog import finding
from harness.check.context import CheckContext
from harness.check.pkg.compliance import contradicted_rules, is_claimed
from harness.check.pkg.folder import ENTRY_FILE, JSON_FILE, PackageFolder, read_package
from harness.check.pkg.limits import artifact_size, time_limits
from harness.check.pkg.logs import ScoreLine, TrainingLog, config_differences
from harness.check.pkg.significance import significance
from harness.check.pkg.submission_json import Claim, SubmissionJson
from harness.findings import Finding, Severity

MIN_SEEDS = 3
MIN_CLAIM_DECIMALS = 4  # logs print 4 decimals at least; a coarser claim is read at 4


def check(ctx: CheckContext) -> list[Finding]:
    if ctx.submission.single_file:
        return []
    package = read_package(ctx.submission)
    record = ctx.options.record_track and package.is_record_claim()
    findings = required_files(ctx, package)  # PG401
    findings += json_fields(package)  # PG402
    chosen = chosen_family(package)
    findings += headline_matches(package, chosen, record)  # PG403
    findings += artifact_size(ctx.submission, package, record)  # PG303
    if record:
        findings += time_limits(package, record)  # PG304
        findings += seed_count(package)  # PG404
    if ctx.options.frontier is not None:
        findings += significance(ctx.options.frontier, package, chosen)  # PG405
    findings += compliance_claims(package, ctx.findings_so_far + findings)  # PG406
    return findings


def required_files(ctx: CheckContext, package: PackageFolder) -> list[Finding]:
    # A missing file is a packaging gap a reviewer asks about, not evidence against the run:
    # accepted records exist without a log (2026-03-21) or without a README.
    missing = [
        (package.readme is None, "README.md", "README.md is missing: the folder should explain the submission"),
        (package.submission_json is None and package.json_error is None, JSON_FILE, "submission.json is missing"),
        (not package.logs, "", "no training log: expected a *.log or *.txt file with step or final score lines"),
    ]
    findings = [finding("PG401", file, 0, message, when="missing-file") for absent, file, message in missing if absent]
    if ENTRY_FILE not in ctx.submission.files:
        return findings + entry_under_another_name(ctx)
    parsed = {id(p.source) for p in ctx.parsed}
    entries = ctx.submission.entry_sources
    reasons = [(s.display_name, "does not parse") for s in entries if id(s) not in parsed]
    # A payload we decoded that is not Python would not run either; a payload we could not
    # decode (truncated stream, budget, a shape we do not follow) is a limit of this tool,
    # already reported by PG000, and says nothing about whether the submission compiles.
    reasons += [
        (f.file, f.message)
        for f in ctx.findings_so_far
        if f.rule == "PG000"
        and f.severity is Severity.ERROR
        and f.file.startswith(ENTRY_FILE)
        and ": the decoded data " in f.message
    ]
    if not entries:
        reasons.append((ENTRY_FILE, "no readable source"))
    if reasons:
        # PG000 messages already name the file; ours do not.
        shown = "; ".join(dict.fromkeys(why if name in why else f"{name}: {why}" for name, why in reasons))
        findings.append(finding("PG401", reasons[0][0], 0, f"train_gpt.py does not compile ({shown})"))
    return findings


def entry_under_another_name(ctx: CheckContext) -> list[Finding]:
    """PG401's code part without ``train_gpt.py`` (issue 12): accepted records name their script
    ``train_gpt_v5.py`` or ``train_mamba3_hybrid.py``, so the entry ``harness/entry.py`` chose must
    parse, and its name is no finding. No Python file at all is the loader's PG000 warning."""
    submission = ctx.submission
    if not submission.has_code:
        return []
    parsed = {id(p.source) for p in ctx.parsed}
    broken = {s.display_name.split("[", 1)[0] for s in submission.entry_sources if id(s) not in parsed}
    if not submission.entry_sources or not broken.issuperset(submission.entry_files):
        return []  # unreadable (PG000 says so), or another candidate entry parses
    names = ", ".join(sorted(broken))
    return [finding("PG401", sorted(broken)[0], 0, f"the entry script does not compile ({names}: does not parse)")]


def json_fields(package: PackageFolder) -> list[Finding]:
    """Warnings only: submission.json is metadata the organizers read by eye, and accepted
    records use many shapes of it; a malformed field never makes a run illegal."""
    if package.json_error is not None:
        return [finding("PG402", JSON_FILE, package.json_error.line, str(package.json_error))]
    problems = package.submission_json.problems if package.submission_json else []
    return [finding("PG402", JSON_FILE, problem.line, problem.message) for problem in problems]


def _agrees(claim: Claim, value: float, value_decimals: int) -> bool:
    """Equal once each side's rounding to the decimals it shows is allowed for. A claim is
    read at >= 4 decimals: "1.2" for a logged 1.2244 would show a better score than was run."""
    claim_decimals = max(claim.decimals, MIN_CLAIM_DECIMALS)
    tolerance = 0.5 * 10.0**-claim_decimals + 0.5 * 10.0**-value_decimals + 1e-12
    return abs(claim.value - value) <= tolerance


def chosen_family(package: PackageFolder) -> str | None:
    """The score family the submission reports: the logs' headline family (latest stage) when
    submission.json agrees with it, otherwise another final family it agrees with; the headline
    family when nothing agrees (so the mismatch message names it)."""
    logs = package.claim_logs()
    if not logs:
        return None
    headline = logs[0].headline()
    common = [f for f in logs[0].families() if all(log.family(f.family) for log in logs)]
    claim = package.submission_json.claim("val_bpb") if package.submission_json else None
    if claim is None or not common or headline is None:
        return headline.family if headline else None
    ordered = [f.family for f in sorted(common, key=lambda f: (f.family != headline.family, -f.priority))]
    agreeing = (name for name in ordered if _agrees(claim, *_mean(_scores(logs, name), "val_bpb")))
    return next(agreeing, ordered[0])  # the headline family comes first when the logs share it


def _scores(logs: list[TrainingLog], family: str) -> list[tuple[TrainingLog, ScoreLine]]:
    return [(log, score) for log in logs if (score := log.family(family)) is not None]


def _mean(scores: Iterable[tuple[TrainingLog, ScoreLine]], key: str) -> tuple[float, int]:
    """The mean of ``key`` over the scores, with the fewest decimals any of them shows."""
    picked = [_pick(score, key) for _, score in scores]
    return fmean(value for value, _ in picked), min(decimals for _, decimals in picked)


def headline_matches(package: PackageFolder, family: str | None, record: bool) -> list[Finding]:
    """The claimed score against the logs. Accepted records report the mean of their seeds, one
    seed's run, the latest of several versions, or a stage whose line we do not parse: a claim
    that matches no reading is a ``warning``. It is an ``error`` only for a record claim of a
    val_bpb better than every bpb number any log prints, by more than the claim's rounding:
    then no run in the folder produced it."""
    data = package.submission_json
    if data is None or not package.logs:
        return []
    if family is None:
        message = "no log has a final score line (… val_loss:… val_bpb:…) to back the claimed val_bpb"
        return [finding("PG403", JSON_FILE, data.line_of("val_bpb"), message, when="unconfirmed")]
    findings = []
    for key in ("val_bpb", "val_loss"):
        claim = data.claim(key)
        if claim is not None:
            findings += _claim_against_logs(package, family, key, claim, record)
    return findings + _seed_claims_against_logs(data, package.logs)


def _pick(score: ScoreLine, key: str) -> tuple[float, int]:
    return (score.val_bpb, score.bpb_decimals) if key == "val_bpb" else (score.val_loss, score.loss_decimals)


def _claim_against_logs(package: PackageFolder, family: str, key: str, claim: Claim, record: bool) -> list[Finding]:
    logs = package.claim_logs()
    scores = _scores(logs, family)
    # The mean over every scored log is one of the subset means.
    if not scores or any(_agrees(claim, *reading) for reading in _subset_means(logs, key)):
        return []
    single = next(((log, f) for log in package.logs for f in log.families() if _agrees(claim, *_pick(f, key))), None)
    if single is not None:
        log, score = single
        message = (
            f"submission.json {key} {claim.value} is the score of one run ({log.path}:{score.line} "
            f"{score.family}), not the mean of the {len(scores)} scored log(s)"
        )
        return [finding("PG403", JSON_FILE, claim.line, message, when="one-run")]
    shown = ", ".join(f"{log.path}:{s.line} {_pick(s, key)[0]}" for log, s in scores)
    what = "the log" if len(scores) == 1 else f"the mean of {len(scores)} logs"
    mean = _mean(scores, key)[0]
    message = f"submission.json {key} {claim.value} does not match {what}: {family} gives {mean:.8f} ({shown})"
    floor = min(((log.lowest_bpb, log.path) for log in package.logs if log.lowest_bpb is not None), default=None)
    # A claim may round or truncate the logged number to the digits it shows (a whole unit in its
    # last place), and the log itself shows at least four decimals.
    rounding = 10.0**-claim.decimals + 0.5e-4
    if key == "val_bpb" and record and floor is not None and claim.value < floor[0] - rounding:
        lowest = f"lowest {floor[0]} in {floor[1]}"
        message += f"; the claim is better than every bpb any log prints ({lowest}): no run in the folder shows it"
        return [finding("PG403", JSON_FILE, claim.line, message)]
    return [finding("PG403", JSON_FILE, claim.line, message, when="unconfirmed")]


def _subset_means(logs: list[TrainingLog], key: str) -> list[tuple[float, int]]:
    """Means a submission may have reported instead of the mean of every scored log: one log
    per seed (the first or the last of reruns), and each family the logs share."""
    readings = []
    for family in {f.family for log in logs for f in log.families()}:
        scored = _scores(logs, family)
        for keep_last in (False, True):
            by_seed: dict[str, tuple[TrainingLog, ScoreLine]] = {}
            for log, score in scored:
                seed = str(log.seed) if log.seed is not None else log.path
                if keep_last or seed not in by_seed:
                    by_seed[seed] = (log, score)
            readings.append(_mean(by_seed.values(), key))
        readings.append(_mean(scored, key))
    return readings


def _seed_claims_against_logs(data: SubmissionJson, all_logs: list[TrainingLog]) -> list[Finding]:
    """Each seed_results entry against the logs of that seed (any of its reruns, any final
    family): a mismatch is a warning, the headline claim decides any error."""
    findings: list[Finding] = []
    for seed_claim in data.seed_claims:
        logs = [log for log in all_logs if log.seed is not None and str(log.seed) == seed_claim.seed]
        families = [(log, f) for log in logs for f in log.families()]
        if not families:
            continue
        for key, claim in (("val_bpb", seed_claim.val_bpb), ("val_loss", seed_claim.val_loss)):
            if claim is None or any(_agrees(claim, *_pick(f, key)) for _, f in families):
                continue
            log, score = next(
                ((log, f) for log, f in families if (h := log.headline()) is not None and f.family == h.family),
                families[-1],
            )
            message = (
                f"seed_results['{seed_claim.seed}'].{key} {claim.value} does not match "
                f"{log.path}:{score.line} ({score.family} {key}:{_pick(score, key)[0]})"
            )
            findings.append(finding("PG403", JSON_FILE, seed_claim.line, message, when="unconfirmed"))
    return findings


def seed_count(package: PackageFolder) -> list[Finding]:
    """Warnings only: early records were accepted on one seed, the significance test over
    three runs was "most often" and waived for systems-only changes, and folders keep
    ablation logs next to the seeds they claim; a reviewer decides what the seeds prove."""
    logs = package.claim_logs()
    findings = []
    data = package.submission_json
    anchor = data.line_of("seeds") if data is not None and "seeds" in data.data else 0
    anchor_file = JSON_FILE if anchor else ""
    distinct = {str(log.seed) if log.seed is not None else log.path for log in logs}
    if len(distinct) < MIN_SEEDS:
        names = ", ".join(log.path for log in logs) or "none"
        message = (
            f"a record claim usually shows logs of >= {MIN_SEEDS} seeds of one configuration; "
            f"found {len(distinct)} ({names})"
        )
        findings.append(finding("PG404", anchor_file, anchor, message))
    if data is not None:
        logged = {str(log.seed) for log in package.logs if log.seed is not None}
        for seed in data.declared_seeds:
            if seed not in logged:
                message = f"submission.json lists seed {seed} but no training log has that seed"
                findings.append(finding("PG404", JSON_FILE, anchor or data.line_of(seed), message))
    with_config = [log for log in logs if log.hparams]
    for other in with_config[1:]:
        reference = with_config[0]
        differences = config_differences(reference, other)
        if differences:
            key, left, right = differences[0]
            more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
            message = (
                f"{other.path} differs from {reference.path} in '{key}' ({right} vs {left}){more}: "
                "seeds of one claim should run the submitted configuration"
            )
            findings.append(finding("PG404", other.path, other.hparam_lines.get(key, 0), message))
    return findings


def compliance_claims(package: PackageFolder, findings: list[Finding]) -> list[Finding]:
    """A warning: the contradicting error finding already decides the verdict, and this one
    only tells the reviewer that the submission claimed otherwise."""
    data = package.submission_json
    if data is None:
        return []
    block = data.data.get("compliance")
    claims = dict(block) if isinstance(block, dict) else {}
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
            message = (
                f"compliance claim '{flag}: {str(value).lower()}' is contradicted by {first.rule} at {where}{more}"
            )
            contradictions.append(finding("PG406", JSON_FILE, data.line_of(flag), message))
    return contradictions
