"""Constants and environment switches under the documented configuration: one evaluator
(``evaluator``) that the data-flow family (``conditions``) and the mechanism detectors
(``reach``) both read."""

from harness.check.switches.evaluator import Evaluation, Evaluator
from harness.unknown import UNKNOWN

__all__ = ["UNKNOWN", "Evaluation", "Evaluator"]
