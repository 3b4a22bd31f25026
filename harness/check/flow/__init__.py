"""Static data-flow engine for validation-data legality (PG101–PG106).

Layers: ``names`` (vocabulary of sources and sinks, fast child iteration), ``index`` (the
submission's functions, classes and call resolution across its modules), ``model`` (taint,
loop frames, conditions, effects), ``taint`` (the ordered statement walk) with ``calls`` (what
each call does: sink, source, container fill, or a submission function inlined at the call
site), ``ordering`` (the rules over the resulting effect timeline) and ``switches`` (which code
the documented configuration runs). None of it imports torch or executes submission code.
"""
