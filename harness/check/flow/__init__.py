"""Static data-flow engine for validation-data legality (PG101–PG106).

Layers: ``names`` (vocabulary of sources and sinks, fast child iteration), ``functions`` (the
submission's functions, classes and call resolution across its modules), ``model`` (taint,
loop frames, conditions, effects), ``taint`` (the ordered statement walk) over ``scope`` (what
one function's walk knows: bindings, loops, conditions, effects so far), with ``calls`` (what
each expression and call does: sink, source, container fill, or a submission function inlined
at the call site) and ``scores`` (which bindings accumulate the reported score), ``ordering``
(the rules over the resulting effect timeline); which code the documented configuration runs
is asked of ``harness/check/switches/``, shared with the mechanism detectors. None of it imports
torch or executes submission code.
"""
