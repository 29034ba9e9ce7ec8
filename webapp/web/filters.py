"""Jinja filters for numbers a person reads."""
from __future__ import annotations

import time


def duration(seconds) -> str:
    seconds = int(max(0, seconds or 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def clock(timestamp) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp or 0))


def init_app(app) -> None:
    app.add_template_filter(duration)
    app.add_template_filter(clock)
