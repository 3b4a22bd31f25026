"""golf-harness: static legality audit and audited evaluation for Parameter Golf.

Layers, lowest first: ``data`` (challenge file formats, exact byte accounting),
``findings``/``submission`` (core types), ``check`` (static audit, never imports torch),
``evaluate`` (score-first evaluator), ``report`` (output formats), ``cli`` (argv and printing).
"""

__version__ = "0.1.0"
