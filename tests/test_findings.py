"""Core finding helpers shared by golf-check and golf-eval."""

from __future__ import annotations

from harness.findings import Finding, Severity, Verdict, unique_findings, verdict_for


def test_unique_findings_drops_exact_repeats_only() -> None:
    first = Finding("PG101", Severity.ERROR, "train_gpt.py", 12, "trained before scored")
    same_place_other_rule = Finding("PG102", Severity.ERROR, "train_gpt.py", 12, "trained before scored")
    later_line = Finding("PG101", Severity.ERROR, "train_gpt.py", 13, "trained before scored")
    assert unique_findings([first, same_place_other_rule, first, later_line, first]) == [
        first,
        same_place_other_rule,
        later_line,
    ]


def test_verdict_order_fail_beats_error_beats_review() -> None:
    error = Finding("PG101", Severity.ERROR, "a.py", 1, "x")
    unreadable = Finding("PG000", Severity.ERROR, "b.py", 0, "cannot parse")
    warning = Finding("PG104", Severity.WARNING, "a.py", 2, "y")
    assert verdict_for([unreadable, error]) is Verdict.FAIL
    assert verdict_for([unreadable, warning]) is Verdict.ERROR
    assert verdict_for([warning]) is Verdict.REVIEW
    assert verdict_for([warning], fail_on_warning=True) is Verdict.FAIL
    assert verdict_for([Finding("PG001", Severity.INFO, "a.py", 3, "z")]) is Verdict.PASS
