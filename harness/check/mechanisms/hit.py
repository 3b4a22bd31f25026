"""What a mechanism detector reports: a ``Hit`` at a node, and the steps of its evidence trail.

The nodes, the module index and the helpers detectors read them with are shared with every
rule family: ``harness/check/tree/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from harness.check.tree.index import ModuleIndex
from harness.findings import Step


@dataclass(frozen=True)
class Hit:
    """A detector's raw result, before the configuration decides its final severity: the
    configuration guards are looked up from ``node`` (the flagged statement); ``path`` is the
    evidence trail shown to the reviewer."""

    rule: str
    index: ModuleIndex
    node: cst.CSTNode
    message: str
    path: tuple[Step, ...] = ()
    zero_factors: tuple[cst.CSTNode, ...] = ()  # factors that switch the mechanism off when 0
    when: str | None = None  # a situation the rule's page declares a lower severity for


def step(index: ModuleIndex, node: cst.CSTNode, note: str) -> Step:
    return Step(file=index.name, line=index.line(node), note=note)
