"""The dashboard: the page, and the form actions its buttons post (answered with a flash)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from webapp.config.library import list_configs
from webapp import store
from webapp.web.extensions import get_db
from webapp.protocol import Command
from webapp.config.builtin.train_settings import SAMPLE_SCHEDULERS
from webapp.web.runs import actions as run_actions
from webapp.web.runs import views as run_views
from webapp.web.sse.fragments import render_progress
from webapp.web.samples.sample_requests import default_prompt, parse_sample_request

bp = Blueprint("dashboard", __name__)

FORM_COMMANDS = {"stop": Command.STOP, "save": Command.SAVE, "backup": Command.BACKUP,
                 "sample": Command.SAMPLE_DEFAULT}


@bp.get("/")
def index():
    conn = get_db()
    run = run_views.current_run()
    return render_template(
        "dashboard/index.html", run=run, last_seq=store.last_seq(conn), schedulers=SAMPLE_SCHEDULERS,
        configs=list_configs(current_app.config["CONFIG_DIR"]),
        progress_html=render_progress(run["id"] if run else None, run["progress"] if run else None),
        samples=store.list_samples(conn, run["id"], limit=24) if run else [],
        log_events=store.recent_events(conn, run["id"], "log") if run else [],
        prompt=default_prompt(store.get_run(conn, run["id"])) if run else "")


@bp.post("/runs/start")
def start():
    run_id = run_actions.start_run(config_name=request.form.get("config_name"))
    ahead = [run["id"] for run in store.active_runs(get_db()) if run["id"] < run_id]
    if ahead:
        return flash(f"Run #{run_id} queued: it starts after run #{ahead[0]}.")
    if store.queue_paused(get_db()):
        return flash(f"Run #{run_id} queued; the queue is paused.")
    # the live state shows the run's stages within a second; this notice goes when they do
    return flash(f"Run #{run_id} queued, starting…", transient=run_id)


@bp.post("/runs/command/<name>")
def command(name: str):
    if name not in FORM_COMMANDS:
        return flash(f"Unknown command {name!r}.", 404)
    run = run_actions.send_command(FORM_COMMANDS[name], _form_run_id())
    return flash(f"{name.capitalize()} sent to run #{run['id']}.")


@bp.post("/runs/<int:run_id>/resume")
def resume(run_id: int):
    run_actions.resume_run(run_id)
    return flash(f"Run #{run_id} queued to resume from its newest backup.")


@bp.post("/runs/sample")
def custom_sample():
    sample = parse_sample_request(request.form)
    run = run_actions.send_command(Command.SAMPLE_CUSTOM, _form_run_id(), sample=sample)
    return render_template("_flash.html", message=f"Sample queued for run #{run['id']}: “{sample['prompt']}”.",
                           level="info", pending_prompt=sample["prompt"])


def _form_run_id() -> int | None:
    raw = request.form.get("run_id", "")
    return int(raw) if raw.isdigit() else None


def flash(message: str, status: int = 200, transient: int | None = None):
    return render_template("_flash.html", message=message, level="info" if status < 400 else "error",
                           transient=transient), status
