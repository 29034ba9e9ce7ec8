"""The latent and text-embedding cache on disk: one file an entry, named by what made it.

A latent's key hashes the model's identity (its path and the VAE's files' sizes and times), the
image file (path, size, modification time), the bucket and the augmentation; a text embedding's
key hashes the model's identity (the text encoder and tokenizer files) and the caption itself.
So a changed image invalidates its own latents, a changed caption setting only the captions it
changes, a new resolution only the latents of that size, another model everything. Each entry is
written to a temporary file and renamed: a stop (or a crash) mid-way leaves whole entries only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

LATENTS, TEXTS = "latents", "text"


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()[:40]


def model_identity(model_path: Path, subfolders: tuple[str, ...]) -> str:
    if Path(model_path).is_file():  # a single-file checkpoint: the file is the identity
        stat = Path(model_path).stat()
        return _digest(str(Path(model_path).resolve()), stat.st_size, stat.st_mtime_ns)
    files = []
    for sub in subfolders:
        folder = Path(model_path) / sub
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                stat = path.stat()
                files.append((path.relative_to(model_path).as_posix(), stat.st_size, stat.st_mtime_ns))
    return _digest(str(Path(model_path).resolve()), files)


class DiskCache:
    def __init__(self, folder: Path, model_path: Path):
        self.folder = Path(folder)
        self.vae_id = model_identity(model_path, ("vae",))
        self.text_id = model_identity(model_path, ("text_encoder", "tokenizer", "text_encoder_2",
                                                   "tokenizer_2"))
        self.computed = {LATENTS: 0, TEXTS: 0}
        self.reused = {LATENTS: 0, TEXTS: 0}

    def summary(self) -> str:
        """For the run's log, in words: "24 images and 3 captions encoded, none reused"."""
        def counted(counts: dict) -> str:
            parts = [f"{counts[LATENTS]} image{'s' * (counts[LATENTS] != 1)}",
                     f"{counts[TEXTS]} caption{'s' * (counts[TEXTS] != 1)}"]
            return "none" if not any(counts.values()) else " and ".join(parts)
        return f"{counted(self.computed)} encoded, {counted(self.reused)} reused from the cache"

    def clear(self) -> None:
        for kind in (LATENTS, TEXTS):
            shutil.rmtree(self.folder / kind, ignore_errors=True)

    def latent_key(self, item, size: tuple[int, int], augment_key: str) -> str:
        return _digest(self.vae_id, str(item.image_path.resolve()), item.file_size, item.mtime_ns,
                       list(size), augment_key)

    def text_key(self, caption: str) -> str:
        return _digest(self.text_id, caption)

    def path(self, kind: str, key: str) -> Path:
        return self.folder / kind / key[:2] / f"{key}.pt"

    def load(self, kind: str, key: str) -> torch.Tensor | None:
        path = self.path(kind, key)
        if not path.is_file():
            return None
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):  # unreadable: compute it again
            return None
        self.reused[kind] += 1
        return value

    def store(self, kind: str, key: str, value: torch.Tensor | dict[str, torch.Tensor]) -> None:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(value, dict):
                    torch.save({k: v.detach().to("cpu").clone() for k, v in value.items()}, handle)
                else:
                    torch.save(value.detach().to("cpu").clone(), handle)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.computed[kind] += 1
