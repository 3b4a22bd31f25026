"""Rule family PG301–PG302: what the submission touches while it runs.

Why one family: both rules are about access outside the artifact at the wrong time —
the network at any point of the run (PG301), and training shards once the training clock
has run out or inside evaluation (PG302). Both are decided by where a call sits relative
to the entry script, the training loop and the evaluation functions, then filtered by the
documented configuration like every other family.
"""

from __future__ import annotations

from harness.check.context import CheckContext
from harness.check.mechanisms.network import find_network
from harness.check.mechanisms.train_after_clock import find_train_reads
from harness.check.switches.reach import Configuration
from harness.check.tree.index import index_submission
from harness.findings import Finding


def check(ctx: CheckContext) -> list[Finding]:
    indexes = index_submission(ctx.parsed)
    configuration = Configuration(indexes, ctx.submission.settings, ctx.submission.alternative_settings)
    hits = find_network(indexes) + find_train_reads(indexes, configuration)
    findings = [configuration.finalize(hit) for hit in hits]
    return sorted(findings, key=lambda f: (f.file, f.line, f.rule))
