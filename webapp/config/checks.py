"""Validation of a whole config: errors (the file is wrong), warnings (a backend cannot honour a
setting), and notes (what a migration changed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from webapp.config import train_config, paths
from webapp.config.backend_support import backend_warnings
from webapp.config.loading import ConfigFormatError, normalise, pack


@dataclass
class Report:
    config: dict | None                      # whole and migrated; None when it was no config at all
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backend: dict | None = None              # which backend runs it, and why (backend_choice)
    packed: dict | None = None               # ``config`` with its concepts and samples inline: what a run stores

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_json(self) -> dict:
        return {"valid": self.valid, "errors": self.errors, "warnings": self.warnings, "notes": self.notes,
                "backend": self.backend}


def validate(raw, base_dir: Path, backends: bool = True, whole: bool = False, roots=None) -> Report:
    """Check a config as a user wrote it (full or partial, any version). ``base_dir`` is where
    relative file names resolve (the workspace). ``whole``: ``raw`` is normalise's output already
    (as the editor loads it), so it is checked as it is, not normalised (copied) once more.
    ``roots``: the folders it may read (paths.read_roots; default the workspace and OTWEB_DATA_ROOTS)."""
    try:
        config, notes = (raw, []) if whole else normalise(raw)
    except ConfigFormatError as exc:
        return Report(None, exc.errors)
    roots = roots if roots is not None else paths.read_roots(base_dir)
    report = Report(config, train_config.check(config), notes=notes)
    packed, report.warnings = pack(config, base_dir, roots)
    report.packed = packed
    typed = {item["field"] for item in report.errors}  # a value of the wrong kind has its error already
    refused = [item for item in paths.config_problems(packed, base_dir, roots) if item["field"] not in typed]
    report.errors += refused
    # a refused path is an error, not also a warning that would say more about it
    report.warnings = [item for item in report.warnings if item["field"] not in {e["field"] for e in refused}]
    # lists read from concept/sample files: their errors are this config's errors too
    for name in ("concepts", "samples"):
        if config.get(name) is None and packed.get(name) is not None:
            report.errors += train_config.TRAIN_CONFIG.fields[name].check(packed[name], name)
    if backends and report.valid:
        warned = {item["field"] for item in report.warnings}
        choice, warnings = backend_warnings(packed, base_dir)
        report.backend = choice.as_json()
        report.warnings += [item for item in warnings if item["field"] not in warned]
    return report


def errors_by_field(items: list[dict]) -> dict[str, str]:
    """The first message for each field, for a form to show next to its input."""
    found: dict[str, str] = {}
    for item in items:
        found.setdefault(item["field"], item["message"])
    return found
