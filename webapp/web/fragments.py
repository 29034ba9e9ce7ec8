"""HTML for the live stream: which partials an event re-renders, for htmx-ext-sse to swap.

Called once per event per web process (the SSE broker caches the result for all its clients),
so what is rendered here is read from SQLite once, not once per browser.
"""
from __future__ import annotations

from flask import render_template

from .. import store
from ..extensions import get_db
from ..trainer.protocol import SAMPLE_EVENTS, Event, RunState
from . import training
from .charts import loss_sparkline

STATE_EVENTS = {Event.STATUS, Event.RUN, Event.FINISHED, Event.ERROR}


def render_event_fragments(event: dict) -> list[tuple[str, str]]:
    name = event["event"]
    if name == Event.PROGRESS:
        from .runs import live_chart  # the run page's loss chart (re-rendered at most once a second)
        return [("progress", render_progress(event["run_id"], event["data"])), ("chart", live_chart(event["run_id"]))]
    if name in STATE_EVENTS:
        run = training.current_run()
        frames = [("state", render_template("dashboard/_state.html", run=run)),
                  ("controls", render_template("dashboard/_controls.html", run=run))]
        if name == Event.RUN and event["data"].get("state") == RunState.RUNNING.value:
            # a new run begins: the gallery and the log start empty
            frames += [("samples_reset", render_template("dashboard/_samples.html", samples=[])),
                       ("log_reset", render_template("dashboard/_log.html", log_events=[]))]
        return frames
    if name in SAMPLE_EVENTS:
        sample = store.get_sample(get_db(), event["data"].get("sample_id", -1))
        return [("sample", render_template("dashboard/_sample.html", sample=sample))] if sample else []
    if name == Event.SAMPLE_PROGRESS:
        return [("sample_progress", render_template("dashboard/_sample_progress.html", **event["data"]))]
    if name == Event.LOG:
        return [("log", render_template("dashboard/_log_line.html", event=event))]
    return []


def render_progress(run_id: int | None, progress: dict | None) -> str:
    losses = store.recent_losses(get_db(), run_id) if run_id else []
    return render_template("dashboard/_progress.html", progress=progress, sparkline=loss_sparkline(losses))
