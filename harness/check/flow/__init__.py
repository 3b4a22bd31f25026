"""Static data-flow engine for validation-data legality (PG101–PG106), by layer: ``names`` (the
vocabulary of sources and sinks), ``functions`` (the submission's functions and call resolution),
``model`` (taint, loops, conditions, effects), ``taint`` (the ordered statement walk) over ``scope``
(what one function's walk knows), ``calls`` (what each call does, callees inlined at the call site),
``scores`` (what accumulates the reported score) and ``ordering`` (the rules over the effect
timeline). Which code the documented configuration runs is asked of ``harness/check/switches/``.
"""
