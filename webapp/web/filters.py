"""Jinja filters for numbers a person reads."""
from __future__ import annotations

import time

from webapp.web import labels
from webapp.web.auth.identity import viewer_text
from webapp.web.extensions import get_db
from webapp.web.runs.stages import run_stages


def duration(seconds) -> str:
    seconds = int(max(0, seconds or 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def clock(timestamp) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp or 0))


def datetime_filter(timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp or 0))


def filesize_filter(size) -> str:
    if size is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _run_stages(run):
    return run_stages(get_db(), run)


def init_app(app) -> None:
    labels.init_app(app)
    app.add_template_global(_run_stages, "run_stages")
    app.add_template_global(time.time, "server_time")
    app.add_template_filter(duration)
    app.add_template_filter(clock)
    app.add_template_filter(datetime_filter, "datetime")
    app.add_template_filter(filesize_filter, "filesize")
    app.add_template_filter(viewer_text)  # a log line: server paths shortened for all but an admin
