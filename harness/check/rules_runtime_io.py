"""Rule family PG301–PG302: access outside the artifact at the wrong time — the network at any
point of the run (PG301), training shards once the training clock has run out or inside
evaluation (PG302) — decided by where a call sits, then filtered by the documented configuration.
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
    return sorted((configuration.finalize(hit) for hit in hits), key=lambda f: (f.file, f.line, f.rule))
