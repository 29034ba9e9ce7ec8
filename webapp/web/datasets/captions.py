"""Captions: one edited inline, or many at once over the grid's filtered set.

A caption is saved atomically beside its image (a temp file renamed into place). Every caption is
handed out with a token (a sha256 of what the file held, or of its absence); a save whose token no
longer matches the file is refused with 409, as a config's save is. Bulk operations (find and
replace, a trigger word at the start or end, remove a tag) first answer how many captions they
would change; applied, they keep what each caption was so that the last one can be undone (a
caption changed again since is left as it is and named).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from webapp.web.datasets.library import Dataset, DatasetError

UNDO_AREA = ".dataset-undo"
MAX_CAPTION = 64 * 1024
MAX_WORD = 200
OPS = ("replace", "trigger", "remove_tag")


def token(text: str | None) -> str:
    return hashlib.sha256(b"\0absent" if text is None else text.encode()).hexdigest()[:20]


def caption_file(dataset: Dataset, image_rel: str, caption_rel: str | None) -> Path:
    rel = caption_rel or os.path.splitext(image_rel)[0] + ".txt"
    return dataset.folder / rel


def current(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def write(path: Path, text: str | None) -> None:
    """Atomic: a reader sees the old caption or the new one, never half of one."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    os.utime(path.parent)  # the index is rebuilt when the folder changes


def save(dataset: Dataset, image, text, expected: str | None) -> str:
    if not isinstance(text, str) or len(text) > MAX_CAPTION:
        raise DatasetError(400, "invalid caption", [{"field": "caption", "message": f"text, at most {MAX_CAPTION} characters"}])
    path = caption_file(dataset, image.rel, image.caption_rel)
    if expected is not None and token(current(path)) != expected:
        raise DatasetError(409, "caption changed", f"{image.rel}'s caption changed since it was loaded: reload it and edit again")
    write(path, text)
    if path.parent != dataset.folder:
        os.utime(dataset.folder)
    return token(text)


def transform(op: dict):
    """The bulk operation as a function of a caption's text (None: no caption yet) -> new text."""
    name = op.get("op") if isinstance(op, dict) else None
    if name not in OPS:
        raise DatasetError(400, "invalid operation", [{"field": "op", "message": f"one of {', '.join(OPS)}"}])

    def field(key: str, allow_empty: bool = False) -> str:
        value = op.get(key)
        if not isinstance(value, str) or (not value.strip() and not allow_empty) or len(value) > MAX_WORD:
            raise DatasetError(400, "invalid operation", [{"field": key, "message": f"text, 1 to {MAX_WORD} characters"}])
        return value

    if name == "replace":
        find, replace = field("find"), field("replace", allow_empty=True)
        return lambda text: text.replace(find, replace) if text is not None else None
    if name == "trigger":
        word, at_end = field("word").strip(), op.get("where") == "end"
        return lambda text: _with_trigger(text, word, at_end)
    tag = field("tag").strip().lower()
    return lambda text: _without_tag(text, tag)


def _tags(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _with_trigger(text: str | None, word: str, at_end: bool) -> str:
    tags = _tags(text or "")
    if word in tags:
        return text
    return ", ".join(tags + [word] if at_end else [word] + tags)


def _without_tag(text: str | None, tag: str):
    if text is None:
        return None
    tags = _tags(text)
    kept = [t for t in tags if t.lower() != tag]
    return text if len(kept) == len(tags) else ", ".join(kept)


def planned(dataset: Dataset, images, op: dict) -> list[tuple[Path, str | None, str]]:
    """(caption file, text now, text after) for each caption the operation changes."""
    change = transform(op)
    found = []
    for image in images:
        path = caption_file(dataset, image.rel, image.caption_rel)
        before = current(path)
        after = change(before)
        if after is not None and after != before:
            found.append((path, before, after))
    return found


def apply(dataset: Dataset, images, op: dict, workspace) -> dict:
    changes = planned(dataset, images, op)
    record = {"op": op, "entries": [{"rel": str(p.relative_to(dataset.folder)), "before": b, "after": a}
                                    for p, b, a in changes]}
    _save_undo(workspace, dataset, record)  # first: a crash half-way can still be undone
    for path, _before, after in changes:
        write(path, after)
    os.utime(dataset.folder)
    return {"changed": len(changes)}


def undo(dataset: Dataset, workspace) -> dict:
    path = _undo_path(workspace, dataset)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DatasetError(409, "nothing to undo", "no bulk change of this dataset is kept") from None
    restored, kept = 0, []
    for entry in record["entries"]:
        caption = dataset.folder / entry["rel"]
        if current(caption) != entry["after"]:
            kept.append(entry["rel"])  # changed again since: the newer text stays
            continue
        write(caption, entry["before"])
        restored += 1
    path.unlink(missing_ok=True)
    os.utime(dataset.folder)
    return {"restored": restored, "changed_since": kept}


def has_undo(dataset: Dataset, workspace) -> bool:
    return _undo_path(workspace, dataset).is_file()


def _undo_path(workspace, dataset: Dataset) -> Path:
    return Path(workspace) / UNDO_AREA / f"{dataset.key}.json"


def _save_undo(workspace, dataset: Dataset, record: dict) -> None:
    path = _undo_path(workspace, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, path)


def tag_frequency(images, limit: int = 100) -> list[tuple[str, int]]:
    counts = Counter(tag for image in images if image.caption for tag in _tags(image.caption))
    return counts.most_common(limit)
