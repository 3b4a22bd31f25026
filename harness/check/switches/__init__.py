"""Constants and environment switches under the documented configuration: one evaluator
(``evaluator``) that the data-flow family (``conditions``) and the mechanism detectors
(``reach``) both read."""

from harness.check.switches.evaluator import UNKNOWN, Evaluation, Evaluator

__all__ = ["UNKNOWN", "Evaluation", "Evaluator"]
