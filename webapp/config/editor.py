"""What the editor's templates read: each input's label, text, options, error and warning."""
from __future__ import annotations

import json
import re
from pathlib import Path

from webapp.config.datasets import FolderStats, folder_stats
from webapp.config.forms import get_at
from webapp.config.train_config import field_at, label_for


def input_id(path: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", path)


def label(path: str, own: str) -> str:
    """A nested setting's label names its object ("UNet: learning rate"); a list row's does not,
    the row is its context."""
    parent = path.split(".")[0]
    if "." not in path or "[" in parent:
        return own
    outer = label_for(parent)
    return own if outer == own else f"{outer}: {own[:1].lower()}{own[1:]}"


def display(value) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class FieldView:
    """One input as the template reads it. Attributes, not a dict: Jinja's ``f.kind`` tries the
    attribute first and, on a dict, fails over by an exception, a dozen times an input and ~100
    inputs a page (a tenth of the editor's time)."""

    __slots__ = ("path", "id", "label", "help", "kind", "nullable", "text", "checked", "error", "warning",
                 "options", "check_url", "minimum", "maximum", "exclusive_minimum")

    def __init__(self, **values):
        for name, value in values.items():
            setattr(self, name, value)

    def __getitem__(self, name: str):
        return getattr(self, name)


class EditorView:
    def __init__(self, config: dict, errors: dict[str, str], texts: dict[str, str],
                 warnings: dict[str, str], base_dir: Path, saved: dict | None = None, check_url: str = "",
                 stats_of=None, choices: dict[str, tuple[str, ...]] | None = None):
        """choices: per field, the values to offer (the backend's, see backend_support.offered_choices)."""
        self.config, self.errors, self.texts, self.warnings = config, errors, texts, warnings
        self.choices = choices or {}
        self.base_dir, self.saved = Path(base_dir), saved or {}
        # concept -> FolderStats, or None while it is being scanned (the web scans off the request)
        self.stats_of = stats_of or (lambda concept: folder_stats(concept, self.base_dir))
        self.check_url = check_url  # where an input is checked as it is typed (one url_for a page)

    def field(self, path: str) -> FieldView:
        spec = field_at(path)
        value = get_at(self.config, path)
        options = []
        if spec.kind == "enum":
            offered = [name for name in spec.enum.names if name in self.choices.get(path, spec.enum.names)]
            options = offered + ([value] if isinstance(value, str) and value not in offered else [])
        return FieldView(path=path, id=input_id(path), label=label(path, spec.label), help=spec.help, kind=spec.kind,
                         nullable=spec.nullable, text=self.texts.get(path, display(value)), checked=value is True,
                         error=self.errors.get(path, ""), warning=self.warnings.get(path, ""), options=options,
                         check_url=self.check_url, minimum=spec.minimum, maximum=spec.maximum,
                         exclusive_minimum=spec.exclusive_minimum)

    def rows(self, name: str) -> list[int]:
        items = self.config.get(name)
        return list(range(len(items))) if isinstance(items, list) else []

    def row_json(self, name: str, index: int) -> str:
        return json.dumps(self.config[name][index], ensure_ascii=False)

    def row_label(self, name: str, index: int) -> str:
        item = self.config[name][index]
        text = item.get("name") or item.get("path") or item.get("prompt") if isinstance(item, dict) else ""
        return str(text or f"#{index + 1}")[:80]

    def stats(self, index: int) -> FolderStats | None:
        concept = self.config["concepts"][index]
        return self.stats_of(concept if isinstance(concept, dict) else {})

    def stats_args(self, index: int) -> dict:
        """What the "scanning…" placeholder sends to fetch the figures when they are ready."""
        concept = self.config["concepts"][index]
        concept = concept if isinstance(concept, dict) else {}
        text = concept.get("text") if isinstance(concept.get("text"), dict) else {}
        return {"index": index, "path": concept.get("path") or "",
                "sub": "1" if concept.get("include_subdirectories") is True else "",
                "source": text.get("prompt_source") or "", "prompt_path": text.get("prompt_path") or "",
                "saved": "1" if self.thumbnails_saved(index) else ""}

    def thumbnails_saved(self, index: int) -> bool:
        """Thumbnails are served from the saved config: only when this row is the saved one's."""
        saved = self.saved.get("concepts")
        current = self.config["concepts"][index]
        return (isinstance(saved, list) and index < len(saved) and isinstance(saved[index], dict)
                and isinstance(current, dict) and saved[index].get("path") == current.get("path"))
