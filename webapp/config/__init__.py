"""OneTrainer's config format: the typed model, validation, migration, packing and the library.

- ``model``: the TrainConfig model (fields, types, enums, ranges) -> JSON schema, per-field errors.
- ``migrate``: older ``__version``s to the current one; ``loading``: parse, lay over the defaults,
  pack concepts/samples inline; ``checks``: one validation report (errors, warnings, notes).
- ``backend_support``: which backend takes a config (``builtin/backend_choice``) and what the built-in trainer cannot honour, read off ``config/builtin/train_settings.py``.
- ``library``: the configs folder and the shipped presets; ``forms``/``editor``/``datasets``: the
  editor's form, its view, and what a concept's folder holds.

The defaults are data, not code: ``defaults.json`` is OneTrainer's TrainConfig defaults (version
11, 162 keys) as OneTrainer writes them, ``defaults_concept.json`` and ``defaults_sample.json`` one
ConceptConfig and one SampleConfig; copied from ../shared/onetrainer/ (default_train_config.json,
default_concepts.json, default_samples_sd15.json), a snapshot of OneTrainer's public source of
August 2026. The ``secrets`` object keeps its keys with empty values. tests/unit/test_config_model.py
checks that they still equal those files. Nothing here imports torch.
"""
