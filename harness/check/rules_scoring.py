"""Rule family PG201–PG204: is the reported score the log-loss of a causal, normalized
distribution over the official tokens, measured in original bytes? The four #1017 conditions
and the byte accounting (R-BPB) are all about *how* a number becomes ``val_bpb``, whatever
data was trained on (PG1xx); the documented configuration decides whether the code ran.
"""

from __future__ import annotations

from harness.check.context import CheckContext
from harness.check.mechanisms.byte_accounting import find_byte_accounting
from harness.check.mechanisms.callees import scoring_callees
from harness.check.mechanisms.causality import (
    find_expert_gate_settings,
    find_target_gates,
    find_target_in_key,
    find_whole_document_statistics,
)
from harness.check.mechanisms.doc_boundary import find_unmasked_smear
from harness.check.mechanisms.hit import Hit
from harness.check.mechanisms.lookups import collect_lookups
from harness.check.mechanisms.normalization import (
    find_byte_spread,
    find_min_by_comparison,
    find_min_over_nll,
    find_ppm_byte_scoring,
    find_unnormalized_ratio,
)
from harness.check.mechanisms.slot import find_slot, find_slot_via_helper
from harness.check.mechanisms.targets import TargetInfo, infer_targets
from harness.check.switches.reach import Configuration
from harness.check.tree.index import ModuleIndex, index_submission
from harness.findings import Finding


def check(ctx: CheckContext) -> list[Finding]:
    indexes = index_submission(ctx.parsed)  # detectors follow helpers into the submission's other files
    configuration = Configuration(indexes, ctx.submission.settings, ctx.submission.alternative_settings)
    hits: list[Hit] = []
    for index, info in _scoring_infos(indexes):
        lookups = collect_lookups(index, info)
        hits += find_target_in_key(index, info, lookups)
        hits += find_target_gates(index, info, lookups)
        hits += find_slot(index, info)
        hits += find_slot_via_helper(index, info)
        hits += find_whole_document_statistics(index, info)
        hits += find_unnormalized_ratio(index, info, lookups)
    for index in indexes:
        hits += find_min_over_nll(index)
        hits += find_min_by_comparison(index)
        hits += find_byte_spread(index)
        hits += find_ppm_byte_scoring(index)
    hits += find_expert_gate_settings(indexes, configuration)
    hits += find_unmasked_smear(indexes)
    hits += find_byte_accounting(indexes, configuration)
    return _unique([configuration.finalize(hit) for hit in hits])


def _scoring_infos(indexes: list[ModuleIndex]) -> list[tuple[ModuleIndex, TargetInfo]]:
    """Scoring functions, then the submission helpers they call (``callees``): a lookup
    helper forms the prediction without taking a log itself (#982's ``score_positions``)."""
    infos: list[tuple[ModuleIndex, TargetInfo]] = []
    for index in indexes:
        found = (infer_targets(index, function) for function in index.functions)
        infos += [(index, info) for info in found if info is not None]
    direct = list(infos)
    done = {id(info.function) for _, info in direct}
    for index in indexes:
        for peer, helper in scoring_callees(index, [info.function for owner, info in direct if owner is index]):
            if id(helper) in done:
                continue
            done.add(id(helper))
            info = infer_targets(peer, helper, on_scoring_path=True)
            if info is not None and (info.names or info.reads):
                infos.append((peer, info))
    return infos


def _unique(findings: list[Finding]) -> list[Finding]:
    """Nested functions are analyzed with their parents; keep one finding per place."""
    first: dict[tuple[str, str, int], Finding] = {}
    for finding in sorted(findings, key=lambda f: (f.file, f.line, f.rule)):
        first.setdefault((finding.rule, finding.file, finding.line), finding)
    return list(first.values())
