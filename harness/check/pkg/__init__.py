"""The submission-package audit's readers and maths (logs, submission.json, significance,
compliance claims); ``harness/check/package.py`` wires their results into findings."""
