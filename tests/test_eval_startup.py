"""Nothing optional in golf-eval's core: a missing guard, probe, adapter or the static audit is
an import error when golf-eval starts, never an evaluation that silently runs without it."""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [
    ("harness.evaluate.guards", "harness.evaluate.pipeline"),
    ("harness.loader", "harness.evaluate.pipeline"),
    ("harness.evaluate.probes", "harness.evaluate.pipeline"),
    ("harness.evaluate.adapters.lora", "harness.evaluate.adapters"),
]

# One interpreter for every case (torch is imported once): before each case every harness module
# is forgotten, and ``None`` in sys.modules makes importing the missing name fail exactly as a
# deleted module would.
PROBE = """
import importlib, json, sys
results = []
for missing, importer in json.loads(sys.argv[1]):
    for name in [n for n in sys.modules if n == "harness" or n.startswith("harness.")]:
        del sys.modules[name]
    sys.modules[missing] = None
    try:
        importlib.import_module(importer)
        results.append("imported")
    except ImportError as exc:
        results.append(f"{type(exc).__name__}: {exc}")
    del sys.modules[missing]
print(json.dumps(results))
"""


def test_a_missing_part_of_golf_eval_stops_it_at_import() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CASES)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        f"ModuleNotFoundError: import of {missing} halted; None in sys.modules" for missing, _ in CASES
    ]
