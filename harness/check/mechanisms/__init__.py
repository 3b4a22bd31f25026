"""Focused static analyses behind the scoring-mechanism (PG201–PG204) and runtime I/O
(PG301–PG302) rules.

Why separate, small analyses instead of one taint engine: each of these rules is about a
recognisable *shape* of code (a hash key that contains the target, a smear gate without a
BOS mask, a hard-coded bytes-per-token constant, a loader read after the training loop),
and each shape has a legal twin that must pass. A narrow detector per shape keeps every
decision explainable in one sentence and keeps false positives on legal idioms visible in
review.
"""
