"""Helpers for the submission-package audit (PG303, PG304, PG401–PG406): log parsing,
submission.json validation, significance testing and compliance-claim matching.

Why a sub-package: each of these reads a different kind of file or does different maths, and
``harness/check/package.py`` only wires their results into findings.
"""
