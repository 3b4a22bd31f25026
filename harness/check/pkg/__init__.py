"""The submission-package audit's readers (logs, submission.json), limits (PG303, PG304),
significance test (PG405) and compliance-claim table; ``harness/check/package.py`` runs them."""
