"""The reference model and trainer, interchangeable with the Parameter Golf baseline.

``model`` (GPT, GPTConfig), ``optim`` (Muon + Adam split), ``data`` (training stream and
per-rank loader), ``quantize`` (the int8 artifact, ``infer_config``, ``model_from_artifact``),
``evaluate`` (the trainer's validation pass with exact sums) and ``train`` (TrainConfig,
``train()``, ``python -m reference_model.train``). The ``golf-train`` CLI wraps ``train()``.
"""
