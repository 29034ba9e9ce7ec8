"""Captions as OneTrainer's concept text settings define them.

``read_caption`` finds an image's caption by the concept's ``prompt_source``: "sample" (the
same-name .txt file), "concept" (one text file for the whole concept: one caption a line, a
random line each time) or "filename" (the file name without its suffix). ``render_caption``
applies, in order, caption dropout (the whole caption becomes ""), tag shuffling (the first
``keep_tags_count`` tags stay in place) and tag dropout (each tag after the kept ones goes with
``tag_dropout_probability``; RANDOM modes draw that probability uniformly up to it per caption).
Everything random takes a ``random.Random``, so a seeded caller gets the same caption every time.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from webapp.config import confined


def read_text_lines(path: Path, roots=None) -> list[str]:
    """The file's non-empty lines; ValueError (naming the file) when it is not UTF-8: a caption
    read with replacement characters would train on garbage without anyone knowing. Opened
    through ``confined`` (checked against ``roots`` as opened; never through a link)."""
    try:
        text = confined.read_bytes(path, roots).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{Path(path).name} is not UTF-8 text (byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_caption(image_path: Path, concept, concept_lines: list[str] | None = None, roots=None) -> list[str]:
    """The caption candidates of one image (one element unless prompt_source is "concept")."""
    source = concept.prompt_source
    if source == "filename":
        return [image_path.stem.replace("_", " ")]
    if source == "concept":
        return list(concept_lines or [""])
    caption_path = image_path.with_suffix(".txt")
    if os.path.lexists(caption_path):
        lines = read_text_lines(caption_path, roots)
        return lines[:1] or [""]
    return [""]


def render_caption(candidates: list[str], concept, caption_dropout: float,
                   rng: random.Random) -> str:
    caption = candidates[rng.randrange(len(candidates))] if len(candidates) > 1 else candidates[0]
    if caption_dropout > 0 and rng.random() < caption_dropout:
        return ""
    if not (concept.tag_shuffling or concept.tag_dropout):
        return caption
    delimiter = concept.tag_delimiter
    tags = [tag.strip() for tag in caption.split(delimiter) if tag.strip()]
    kept, rest = tags[:concept.keep_tags_count], tags[concept.keep_tags_count:]
    if concept.tag_shuffling:
        rng.shuffle(rest)
    if concept.tag_dropout and concept.tag_dropout_probability > 0:
        chance = concept.tag_dropout_probability
        if concept.tag_dropout_mode != "FULL":
            chance = rng.uniform(0, chance)
        rest = [tag for tag in rest if rng.random() >= chance]
    joiner = delimiter if delimiter.endswith(" ") else delimiter + " "
    return joiner.join(kept + rest)
