"""Static data-flow engine for validation-data legality (PG101–PG106).

Layers: ``names`` (vocabulary of sources and sinks), ``index`` (the submission's functions and
call resolution), ``taint`` (propagation producing an ordered effect timeline), ``ordering``
(the rules over that timeline) and ``switches`` (which code the documented configuration runs).
None of it imports torch or executes submission code.
"""
