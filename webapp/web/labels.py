"""Plain words for what the config and the record store as names: "Stable Diffusion 1.5" for
STABLE_DIFFUSION_15, "AdamW" for ADAMW, "Learning rate" for learning_rate, "3 min ago" for a Unix
time. Pages show the label; the raw name stays one hover away (a title), for those who know it."""
from __future__ import annotations

import datetime
import re
import time

from markupsafe import Markup, escape

from webapp.config.names import value_label
from webapp.config.train_config import label_for

PATH_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
PARTS = {"unet": "UNet", "text_encoder": "Text encoder", "text_encoder_2": "Text encoder 2", "vae": "VAE",
         "optimizer": "Optimizer", "concepts": "Concept", "samples": "Sample", "image": "Image", "text": "Text",
         "embedding": "Embedding", "prior": "Prior"}


def field_label(path: str) -> str:
    """``unet.learning_rate`` -> "UNet: Learning rate"; ``concepts[2].path`` -> "Concept 3: Path"."""
    steps = PATH_STEP.findall(path or "")
    if not steps:
        return path or ""
    outer = []
    for name, index in steps[:-1]:
        part = PARTS.get(name, label_for(name))
        outer.append(f"{part} {int(index) + 1}" if index else part)
    last = steps[-1][0]
    if last == "optimizer" and outer == ["Optimizer"]:
        return "Optimizer"
    return ": ".join([*outer, label_for(last)])


def plain(value) -> Markup:
    """The label, with the raw name as its title (one hover away) when they differ."""
    label = value_label(value)
    if isinstance(value, str) and label != value:
        return _raw_name(value, label)
    return Markup(escape(label))


def plain_field(path: str) -> Markup:
    return _raw_name(path, field_label(path))


def _raw_name(name, label) -> Markup:
    # f-string and escape, not Markup.format: its escaping formatter cost ~0.3 ms a call, three a list row
    return Markup(f'<span class="raw-name" title="{escape(name)}">{escape(label)}</span>')


def epoch_number(epoch) -> str:
    """The record counts epochs from 0 (as the trainer does); people, the dashboard and the run
    page count from 1: "Epoch 80 / 80" and a model "saved in epoch 80" are the same epoch."""
    return "–" if epoch is None else str(int(epoch) + 1)


def ago(timestamp, now: float | None = None) -> str:
    if not timestamp:
        return "–"
    seconds = (now or time.time()) - float(timestamp)
    if seconds < 0:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            plural = "s" if count > 1 and unit != "min" else ""
            return f"{count} {unit}{plural} ago"
    return "just now" if seconds < 10 else f"{int(seconds)} s ago"


def when(timestamp) -> Markup:
    """A <time>: relative text, the local date and time on hover (app.js puts the browser's own
    local time there; the server's is the fallback)."""
    if not timestamp:
        return Markup("–")
    iso = datetime.datetime.fromtimestamp(float(timestamp), datetime.timezone.utc).isoformat()
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(timestamp)))
    return Markup(f'<time datetime="{escape(iso)}" title="{escape(local)}" data-relative>{escape(ago(timestamp))}</time>')


def init_app(app) -> None:
    app.add_template_filter(plain)
    app.add_template_filter(plain_field)
    app.add_template_filter(value_label)
    app.add_template_filter(field_label)
    app.add_template_filter(epoch_number)
    app.add_template_filter(ago)
    app.add_template_filter(when)
