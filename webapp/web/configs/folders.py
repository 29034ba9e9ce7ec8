"""A concept's image folder that is not there is a field error in the editor, as it is typed and
after a save, like a negative learning rate; unlike one, it does not stop a save (the folder may
be made later), but a run cannot start until it exists."""
from __future__ import annotations

import re
from pathlib import Path

from webapp.config.onetrainer_rules import missing_folders
from webapp.web.configs.files import workspace

CONCEPT_PATH = re.compile(r"concepts\[\d+\]\.path")


def missing_folder_errors(config: dict, flagged: set[str]) -> list[dict]:
    """{"field", "message"} for each enabled concept whose folder is absent, but for fields with an error already."""
    return [{"field": item["field"], "message": item["message"]}
            for item in missing_folders(config, Path(workspace())) if item["field"] not in flagged]


def folder_text(path: str, text) -> str | None:
    """The error of a concept's path input while it is typed: no folder there."""
    if not CONCEPT_PATH.fullmatch(path) or not isinstance(text, str) or not text.strip():
        return None
    folder = Path(workspace()) / Path(text.strip()).expanduser()
    return None if folder.is_dir() else f"no image folder at {text.strip()}"
