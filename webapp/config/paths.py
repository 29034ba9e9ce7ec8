"""Where a config may read and write: one rule, called by the web's validation, by the worker
before it starts a trainer, and by the OneTrainer adapter (torch-free, so all three can import it).

- Reads (base models, concept folders, caption and list files) only inside the read roots: the
  workspace, the config folder and the folders an admin names in OTWEB_DATA_ROOTS.
- Writes (outputs, intermediate saves, OneTrainer's workspace and debug folders) only inside the
  run's folder; caches only inside the workspace's cache folder. A relative path resolves there;
  an absolute one, or one that escapes (``..``, a symlink), is refused.

Every path is resolved (symlinks followed, ``..`` folded) before it is compared, and checked in
its NFKC form as well as it was written: a name made of full-width dots (U+FF0E) is harmless on
disk, but any tool along the way that normalises Unicode would turn it into ``..``. A path outside
the roots gets the same message whether it exists or not, so the answer says nothing about the host.
"""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from webapp.settings import DATA_ROOTS_ENV, env_text

ENV_ROOTS = DATA_ROOTS_ENV
CACHE_FOLDER = "workspace-cache"          # the workspace's cache folder (OneTrainer's default cache_dir)
RUN_PLACEHOLDER = ("runs", "0")           # validation happens before a run has a folder: judge by a stand-in
OUTSIDE_READ = "is outside the folders this server may read (an admin adds them to OTWEB_DATA_ROOTS)"
OUTSIDE_RUN = "must be a relative path inside the run's folder (no absolute path, no '..')"
OUTSIDE_CACHE = f"must be a relative path inside the workspace's cache folder ({CACHE_FOLDER}/...)"
BAD_PREFIX = "must be a file name prefix, without '/', '\\' or '..'"

READ_FIELDS = ("base_model_name", "lora_model_name", "concept_file_name", "sample_definition_file_name")
RUN_FIELDS = ("output_model_destination", "workspace_dir", "debug_dir")
CACHE_FIELDS = ("cache_dir", "huggingface_cache_dir")


class PathRefused(ValueError):
    """A config names a path it may not use; ``errors`` is a list of {field, message}."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{item['field']} {item['message']}" for item in errors))
        self.errors = errors


def split_roots(raw: str | None) -> list[Path]:
    """OTWEB_DATA_ROOTS: folders separated by ':' (os.pathsep) or ','."""
    text = (raw or "").replace(",", os.pathsep)
    return [Path(item.strip()) for item in text.split(os.pathsep) if item.strip()]


def read_roots(workspace: Path, config_dir: Path | None = None, extra=None) -> tuple[Path, ...]:
    """The folders a config may read from. ``extra`` defaults to OTWEB_DATA_ROOTS."""
    extra = split_roots(env_text(ENV_ROOTS)) if extra is None else extra
    extra = split_roots(extra) if isinstance(extra, str) else extra
    roots = [Path(workspace), *([Path(config_dir)] if config_dir else []), *extra]
    return tuple(dict.fromkeys(Path(os.path.realpath(root)) for root in roots))


def _forms(text: str):
    yield text
    normalised = unicodedata.normalize("NFKC", text)
    if normalised != text:
        yield normalised


def _resolved(text: str, base: Path) -> Path:
    path = Path(text)
    return Path(os.path.realpath(path if path.is_absolute() else Path(base) / path))


def _inside(path: Path, roots) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _usable(text) -> bool:
    return isinstance(text, str) and "\x00" not in text and not text.startswith("~")


def readable(text, base_dir: Path, roots) -> Path | None:
    """The resolved path when ``text`` (relative to ``base_dir``) lies inside a read root; else None."""
    if not _usable(text) or not text.strip():
        return None
    base = Path(os.path.realpath(base_dir))
    if not all(_inside(_resolved(form, base), roots) for form in _forms(text)):
        return None
    return _resolved(text, base)


def writable(text, base: Path, folder: Path | None = None) -> Path | None:
    """The resolved path when ``text`` is relative (to ``base``) and lands inside ``folder``
    (``base`` itself by default); else None."""
    if not _usable(text) or not text.strip():
        return None
    base = Path(os.path.realpath(base))
    folder = Path(os.path.realpath(folder)) if folder is not None else base
    for form in _forms(text):
        if Path(form).is_absolute() or form.startswith("\\") or not _inside(_resolved(form, base), (folder,)):
            return None
    return _resolved(text, base)


def _named(config: dict) -> list[tuple[str, object]]:
    """(field, value) for every path a config reads, besides the top-level READ_FIELDS."""
    found = [(name, config.get(name)) for name in READ_FIELDS]
    for key, value in config.items():  # each model part (unet, vae, text_encoder, embedding, ...)
        if isinstance(value, dict) and value.get("model_name"):
            found.append((f"{key}.model_name", value["model_name"]))
    for list_name, inner in (("concepts", ("path",)), ("additional_embeddings", ("model_name",))):
        items = config.get(list_name)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            found += [(f"{list_name}[{index}].{name}", item.get(name)) for name in inner]
            text = item.get("text")
            if list_name == "concepts" and isinstance(text, dict):
                found.append((f"concepts[{index}].text.prompt_path", text.get("prompt_path")))
    return [(field, value) for field, value in found if isinstance(value, str) and value]


def config_problems(config: dict, workspace: Path, roots, run_dir: Path | None = None) -> list[dict]:
    """Every path of ``config`` that breaks the rules, as {field, message}. ``run_dir``: the run's
    folder (the worker and the trainer know it; validation judges by a stand-in in the workspace)."""
    if not isinstance(config, dict):
        return []
    workspace = Path(workspace)
    run_dir = Path(run_dir) if run_dir is not None else workspace.joinpath(*RUN_PLACEHOLDER)
    problems = [{"field": field, "message": OUTSIDE_READ}
                for field, value in _named(config) if readable(value, workspace, roots) is None]
    for fields, base, folder, message in ((RUN_FIELDS, run_dir, run_dir, OUTSIDE_RUN),
                                          (CACHE_FIELDS, workspace, workspace / CACHE_FOLDER, OUTSIDE_CACHE)):
        for field in fields:
            value = config.get(field)
            if isinstance(value, str) and value and writable(value, base, folder) is None:
                problems.append({"field": field, "message": message})
    prefix = config.get("save_filename_prefix")
    if isinstance(prefix, str) and any(bad in form for form in _forms(prefix) for bad in ("/", "\\", "..", "\x00")):
        problems.append({"field": "save_filename_prefix", "message": BAD_PREFIX})
    return problems


def require_confined(config: dict, workspace: Path, roots, run_dir: Path) -> None:
    """For the worker and the trainer: refuse, whatever the web said."""
    problems = config_problems(config, workspace, roots, run_dir)
    if problems:
        raise PathRefused(problems)
