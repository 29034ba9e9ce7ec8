"""The playground's routes: the page, open, close, sample (pages and their JSON twins). What a
session is lives in ``sessions``."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, url_for

from webapp import store
from webapp.config.builtin.train_settings import SAMPLE_SCHEDULERS
from webapp.protocol import PLAYGROUND_MARKER as MARKER, Command
from webapp.web.api_input import before_arg, json_body, page_of
from webapp.web.extensions import get_db
from webapp.web.playground.sessions import (close_session, current, idle_arg, open_session, past_session,
                                            require_open, sources)
from webapp.web.runs import actions as run_actions
from webapp.web.samples.sample_requests import default_prompt, parse_sample_request

bp = Blueprint("playground", __name__)
SESSIONS_PAGE = 20  # earlier sessions a page lists


# -- pages and form actions --

@bp.get("/playground")
def page():
    session = current()
    samples = store.samples.list_for_run(get_db(), session["id"], limit=60) if session else []
    spec = store.run_config(store.get_run(get_db(), session["id"]))[MARKER] if session else None
    prompt = default_prompt(store.get_run(get_db(), spec["source_run"])) if spec and spec.get("source_run") else ""
    past, older = past_sessions(session)
    return render_template("samples/playground.html", session=session, spec=spec, sources=sources(), prompt=prompt,
                           samples=samples, schedulers=SAMPLE_SCHEDULERS, last_seq=store.last_seq(get_db()),
                           past=past, older=older, paged="before" in request.args)


def past_sessions(session: dict | None) -> tuple[list[dict], int | None]:
    """A page of the earlier sessions (``before=<id>``: older ones) and the next page's cursor."""
    rows, older = page_of(store.playground_sessions(get_db(), SESSIONS_PAGE + 1, before_arg()), SESSIONS_PAGE)
    return [past_session(r) for r in rows if not session or r["id"] != session["id"]], older


@bp.post("/playground/open")
@bp.post("/api/playground/open", endpoint="api_open")
def open_form():
    values = json_body() if request.is_json else request.form
    run_id = open_session(values.get("source"), idle_arg(values))
    if request.headers.get("HX-Request"):
        # opened from elsewhere (a finished run's next steps): go to it; from its own page: show it
        if values.get("then") == "playground":
            return "", 204, {"HX-Redirect": url_for("playground.page")}
        return "", 204, {"HX-Refresh": "true"}
    return jsonify(run_id=run_id, state="queued"), 202


@bp.post("/playground/close")
@bp.post("/api/playground/close", endpoint="api_close")
def close_form():
    session = close_session()
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Refresh": "true"}
    return jsonify(run_id=session["id"], closing=True), 202


@bp.post("/playground/sample")
def sample_form():
    session = require_open()
    sample = parse_sample_request(request.form)
    run_actions.send_command(Command.SAMPLE_CUSTOM, session["id"], sample=sample)
    return render_template("_flash.html", message=f"Sample queued: “{sample['prompt']}”.", level="info",
                           pending_prompt=sample["prompt"])


@bp.get("/api/playground")
def state():
    session = current()
    past, older = past_sessions(session)
    return jsonify(session=session, sources=[{k: s[k] for k in ("key", "run_id", "label", "config_name")}
                                             for s in sources()],
                   sessions=[{k: s[k] for k in ("id", "state", "source", "source_run", "images", "created_at")}
                             for s in past], next_before=older)
