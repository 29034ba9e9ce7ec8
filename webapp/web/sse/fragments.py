"""HTML for the live stream: which partials an event re-renders, for htmx-ext-sse to swap.

Called once per event per web process (the SSE broker caches the result for all its clients),
so what is rendered here is read from SQLite once, not once per browser.
"""
from __future__ import annotations

from flask import current_app, has_request_context, render_template, request

from webapp import store
from webapp.web.extensions import get_db
from webapp.protocol import SAMPLE_EVENTS, Event, RunState
from webapp.web.runs import views as run_views
from webapp.web.charts import loss_sparkline
from webapp.web.runs.charts import live_chart  # the run page's loss chart (re-rendered at most every 5 s live)

STATE_EVENTS = {Event.STATUS, Event.RUN, Event.FINISHED, Event.ERROR}
SENT_CHARTS_KEPT = 32  # runs whose last streamed chart a process remembers


def render_event_fragments(event: dict, replayed: bool = False) -> list[tuple[str, str]]:
    """``replayed``: for a client catching up from SQLite, which may have missed the live frames."""
    name = event["event"]
    if name == Event.PROGRESS:
        frames = [("progress", render_progress(event["run_id"], event["data"]))]
        chart = live_chart(event["run_id"])
        if replayed or chart_changed(event["run_id"], chart):
            frames.append(("chart", chart))
        return frames
    if name in STATE_EVENTS:
        run = run_views.current_run()
        frames = []
        starts = name == Event.RUN and event["data"].get("state") == RunState.RUNNING.value
        if run is not None and (starts or not store.list_samples(get_db(), run["id"], limit=1)):
            # the run shown has no samples yet (it was assigned, its dataset is on its way, it begins):
            # its gallery is empty before its state shows, never the previous run's samples beside it
            frames.append(("samples_reset", render_template("dashboard/_samples.html", samples=[], run=run)))
        if starts:  # its log starts empty too (a run's lines may come before its first sample)
            frames.append(("log_reset", render_template("dashboard/_log.html", log_events=[])))
        frames += [("state", render_template("dashboard/_state.html", run=run)),
                   ("controls", render_template("dashboard/_controls.html", run=run))]
        if run is not None and not run.get("progress"):
            # a run that has not stepped yet: the previous run's progress must not stay beside it
            frames.append(("progress", render_progress(run["id"], None)))
        return frames
    if name in SAMPLE_EVENTS:
        sample = store.get_sample(get_db(), event["data"].get("sample_id", -1))
        return [("sample", render_template("dashboard/_sample.html", sample=sample))] if sample else []
    if name == Event.SAMPLE_PROGRESS:
        return [("sample_progress", render_template("dashboard/_sample_progress.html", **event["data"]))]
    if name == Event.LOG:
        return [("log", render_template("dashboard/_log_line.html", event=event))]
    return []


def chart_changed(run_id: int, chart: str) -> bool:
    """Whether this chart differs from the one this process last streamed live for the run. The
    chart is redrawn at most every 5 s (less for a long run) but progress comes every second:
    resending the same SVG (up to ~20 kB) each time cost every client's socket, and every
    browser a swap, for nothing. A page shows the chart as it loads; the stream carries changes."""
    sent = current_app.extensions.setdefault("sse_sent_charts", {})
    key = (run_id, request.script_root if has_request_context() else "")  # frames differ per sub-path
    if sent.get(key) == chart:
        return False
    sent.pop(key, None)
    sent[key] = chart
    while len(sent) > SENT_CHARTS_KEPT:
        del sent[next(iter(sent))]  # the run streamed least recently
    return True


def render_progress(run_id: int | None, progress: dict | None) -> str:
    losses = store.recent_losses(get_db(), run_id) if run_id else []
    return render_template("dashboard/_progress.html", progress=progress, sparkline=loss_sparkline(losses))
