"""golf-eval: the strict score-first evaluator and its verifiable audit log.

Layers, lowest first: ``windows`` (which window scores which targets, chunk assignment),
``fingerprint`` (on-device state checksums, full SHA-256), ``scored`` (the adapter's read-only
view of scored tokens), ``scoring`` (logits → normalized NLL sums), ``adapters`` (TTT plug-ins),
``log``/``verify`` (hash-chained JSON lines and their re-check), ``evaluator`` (score → log →
adapt), ``pipeline`` (model loading, static audit, probes, guards, report) and
``report_files``; ``probes`` and ``guards`` run around every evaluation.
"""
