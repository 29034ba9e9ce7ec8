"""Sample pages: every run's samples in one gallery, a run's gallery (a prompt-by-step grid that grows live), one sample large with
its settings, and two samples side by side. The playground has its own module."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from webapp import store
from webapp.web.api_input import before_arg, page_of
from webapp.web.extensions import get_db
from webapp.web.errors import ApiError
from webapp.web.samples.sample_requests import sample_or_404

bp = Blueprint("samples", __name__)
SETTING_LABELS = (("negative_prompt", "Negative prompt"), ("seed", "Seed"), ("steps", "Steps"),
                  ("cfg_scale", "CFG"), ("width", "Width"), ("height", "Height"),
                  ("noise_scheduler", "Scheduler"), ("lora_scale", "LoRA strength"), ("bytes", "File size"))


GALLERY_PAGE = 60


@bp.get("/samples")
def index():
    prompt = request.args.get("prompt", "").strip()
    source = request.args.get("source", "")
    run = request.args.get("run", "")
    if source not in ("", *store.samples.GALLERY_SOURCES):
        raise ApiError(400, "invalid parameter", [{"field": "source", "message": "training or playground"}])
    samples, older = page_of(store.samples.across_runs(get_db(), prompt or None, source or None,
                                                       int(run) if run.isdigit() else None, before_arg(),
                                                       GALLERY_PAGE + 1), GALLERY_PAGE)
    return render_template("samples/index.html", samples=samples, prompt=prompt, source=source,
                           run=run if run.isdigit() else "", older=older)


def _run_or_404(run_id: int) -> dict:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    return run


@bp.get("/runs/<int:run_id>/samples")
def gallery(run_id: int):
    run = _run_or_404(run_id)
    prompt = request.args.get("prompt", "").strip()
    conn = get_db()
    return render_template("samples/gallery.html", run=run, prompt=prompt, prompts=store.samples.prompts(conn, run_id),
                           grid=store.samples.grid(conn, run_id, prompt or None), last_seq=store.last_seq(conn))


@bp.get("/runs/<int:run_id>/samples/grid")
def grid(run_id: int):
    run = _run_or_404(run_id)
    prompt = request.args.get("prompt", "").strip()
    return render_template("samples/_grid.html", run=run, prompt=prompt,
                           grid=store.samples.grid(get_db(), run_id, prompt or None))


@bp.get("/samples/<int:sample_id>")
def sample_page(sample_id: int):
    sample = sample_or_404(sample_id)
    return render_template("samples/sample.html", sample=sample, labels=SETTING_LABELS,
                           others=store.samples.same_prompt(get_db(), sample))


@bp.get("/samples/compare")
def compare():
    ids = []
    for name in ("a", "b"):
        raw = request.args.get(name, "")
        if not raw.isdigit():
            raise ApiError(400, "invalid parameter", [{"field": name, "message": "pick a sample"}])
        ids.append(int(raw))
    left, right = (sample_or_404(i) for i in ids)
    return render_template("samples/compare.html", left=left, right=right, labels=SETTING_LABELS,
                           others=store.samples.same_prompt(get_db(), left))
