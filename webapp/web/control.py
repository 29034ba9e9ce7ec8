"""Starts the control plane's loop (webapp/control/loop.py) in every web process; one leads."""
from __future__ import annotations

from flask import Flask

from webapp.control.loop import ControlLoop


def init_app(app: Flask) -> ControlLoop:
    config = app.config
    loop = app.extensions.setdefault("control_loop", ControlLoop(
        config["REDIS_URL"], config["DATABASE"], config["SETTINGS"].run_dir, config.get("AUTH") == "on",
        workspace=config["WORKSPACE"]))
    if config.get("CONTROL_LOOP", not app.testing):
        loop.start()
    return loop
