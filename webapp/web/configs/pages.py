"""The config pages: the library (import, export, duplicate, rename, delete) and the editor.

Every action is a plain form POST that works without JavaScript; with htmx the editor's form is
swapped in place and each input is checked as it changes (``check``). Errors come back as the
page (or the form) with each message next to its field, and a 4xx status.
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, send_file, url_for

from webapp.config import confined
from webapp.config.backend_support import offered_choices
from webapp.config.checks import Report, errors_by_field, validate
from webapp.config.editor import EditorView, input_id
from webapp.config.forms import TAB_KEYS, TABS, apply_form, check_text, new_concept, new_sample
from webapp.config.library import Stored, sanitize_name
from webapp.config.loading import ConfigFormatError, dumps, normalise, pack, parse_json
from webapp.web.runs import actions as run_actions
from webapp.web.configs.folders import folder_text, missing_folder_errors
from webapp.web.configs.scans import scanner
from webapp.web.configs.files import MAX_BODY, library, library_errors, read_roots, workspace
from webapp.web.errors import ApiError

bp = Blueprint("configs", __name__, url_prefix="/configs")


@bp.before_request
def limit_body():
    request.max_content_length = MAX_BODY


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def render_index(message: str | None = None, detail=None, status: int = 200):
    entries = [{**entry, "changed": time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["modified"]))}
               for entry in library().entries()]
    return render_template("configs/index.html", entries=entries, message=message,
                           detail=detail, level="error" if status >= 400 else "info"), status


@bp.get("/")
def index():
    return render_index()


@bp.post("/import")
def import_config():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_index("Choose a OneTrainer config (.json) to import.", status=400)
    try:
        raw = parse_json(upload.read(MAX_BODY + 1))
    except ConfigFormatError as exc:
        return render_index(f"{upload.filename} is not a config", exc.errors, 400)
    report = validate(raw, workspace(), roots=read_roots())
    if not report.valid:
        return render_index(f"{upload.filename} was not imported: it has errors", report.errors, 400)
    try:
        with library_errors():
            name = sanitize_name(request.form.get("name") or upload.filename)
            library().save(name, report.config, create=True)
    except ApiError as exc:
        return render_index(exc.error, exc.detail, exc.status)
    flash(f"Imported {upload.filename} as “{name}”.")
    return redirect(url_for(".edit", name=name), 303)


@bp.get("/<path:name>/export")
def export(name: str):
    """The config packed (concepts and samples inline) as one file OneTrainer can load."""
    stored, config, _ = load_for_editing(name)
    filename = stored.name.rsplit("/", 1)[-1] + ".json"  # a checked name: safe in the header
    return Response(dumps(config), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.post("/new")
def new():
    """A new config starts as a copy of one to start from (a preset, or one of yours), named."""
    start = request.form.get("start_from", "")
    if not start:
        return render_index("invalid field", [{"field": "start_from", "message": "pick a config to start from"}], 400)
    return _copy(start, f"New config “{{new}}”, started from “{start}”.")


@bp.post("/<path:name>/duplicate")
def duplicate(name: str):
    return _copy(name, f"“{name}” copied to “{{new}}”.")


def _copy(name: str, message: str):
    """Duplicate ``name`` under the form's new_name (else a free one) and open it in the editor."""
    try:
        with library_errors():
            created = library().duplicate(name, sanitize_name(request.form["new_name"])
                                          if request.form.get("new_name") else None)
    except ApiError as exc:
        return render_index(exc.error, exc.detail, exc.status)
    flash(message.replace("{new}", created))  # not str.format: a config's name may hold braces
    return redirect(url_for(".edit", name=created), 303)


@bp.post("/<path:name>/rename")
def rename(name: str):
    try:
        with library_errors():
            new = sanitize_name(request.form.get("new_name", ""))
            library().rename(name, new)
    except ApiError as exc:
        return render_index(exc.error, exc.detail, exc.status)
    flash(f"“{name}” renamed to “{new}”.")
    return redirect(url_for(".index"), 303)


@bp.post("/<path:name>/delete")
def delete(name: str):
    try:
        with library_errors():
            library().delete(name, expected_version=request.form.get("version") or None)
    except ApiError as exc:
        return render_index(exc.error, exc.detail, exc.status)
    flash(f"“{name}” deleted.")
    return redirect(url_for(".index"), 303)


def load_for_editing(name: str) -> tuple[Stored, dict, list[str]]:
    """The stored config, whole and with its concepts and samples inline, and migration notes."""
    with library_errors():
        stored = library().read(name)
    config, notes = normalise(stored.raw)
    packed, _ = pack(config, workspace(), read_roots())
    return stored, packed, notes


@bp.get("/<path:name>/edit")
def edit(name: str):
    stored, config, notes = load_for_editing(name)
    tab = request.args.get("tab") if request.args.get("tab") in TAB_KEYS else TAB_KEYS[0]
    return render_editor(stored, config, config, tab=tab, notes=notes,
                         message="Saved." if request.args.get("saved") else None, whole=True)


def render_editor(stored: Stored, config: dict, saved: dict, *, tab: str, form_errors=None, texts=None,
                  message: str | None = None, detail=None, status: int = 200, notes=(), whole: bool = False,
                  report: Report | None = None, unsaved: bool = False):
    """whole: ``config`` is as load_for_editing made it (normalised), not as a form left it.
    report: ``config``'s validation, when the caller made it already."""
    report = report or validate(config, workspace(), whole=whole, roots=read_roots())
    errors = errors_by_field(report.errors)
    errors.update(form_errors or {})
    roots, scans = read_roots(), scanner(current_app)
    backend = (report.backend or {}).get("name")
    all_errors = report.errors + [{"field": k, "message": v} for k, v in (form_errors or {}).items()]
    folders = missing_folder_errors(config, set(errors)) if isinstance(config.get("concepts"), list) else []
    all_errors += folders
    errors.update(errors_by_field(folders))
    view = EditorView(config, errors, texts or {}, errors_by_field(report.warnings), workspace(), saved,
                      check_url=url_for(".check_field"), choices=offered_choices(config, backend),
                      stats_of=lambda concept: scans.cached(concept, workspace(), roots))
    template = "configs/_editor.html" if is_htmx() else "configs/editor.html"
    return render_template(template, stored=stored, name=stored.name, view=view, tabs=TABS, tab=tab,
                           tab_errors=_errors_per_tab(all_errors), unsaved=unsaved,
                           errors=all_errors, warnings=report.warnings, notes=list(notes) + report.notes,
                           backend=report.backend, message=message, detail=detail, level="error" if status >= 400 else "info",
                           input_id=input_id), status


def _errors_per_tab(errors: list[dict]) -> dict[str, int]:
    """How many errors each tab holds: its fields, and its list's rows (concepts[2].path)."""
    counts: dict[str, int] = {}
    for error in errors:
        path = error.get("field") or ""
        for tab in TABS:
            if path in tab.fields or (tab.editor and path.startswith(tab.editor + "[")):
                counts[tab.key] = counts.get(tab.key, 0) + 1
                break
    return counts


@bp.post("/<path:name>/edit")
def edit_post(name: str):
    stored, saved, _ = load_for_editing(name)
    result = apply_form(saved, request.form)
    tab = request.form.get("tab") if request.form.get("tab") in TAB_KEYS else TAB_KEYS[0]
    action, _, argument = request.form.get("action", "save").partition(":")

    report = None

    def again(message=None, detail=None, status=200):
        return render_editor(stored, result.config, saved, tab=tab, form_errors=result.errors, texts=result.texts,
                             message=message, detail=detail, status=status, report=report,
                             unsaved=result.config != saved)

    if action in LIST_ACTIONS:
        return again(LIST_ACTIONS[action](result.config, argument, request.form))
    # the one validation of this save: the page below and the run (if started) use this report
    report = validate(result.config, workspace(), whole=True, roots=read_roots())
    if result.errors or not report.valid:
        return again(f"Not {'started' if action == 'start' else 'saved'}: fix the settings marked below.", status=400)
    try:
        if action == "start":
            run_id = run_actions.start_run(config_name=name, config=result.config, report=report)
            return again(f"Run #{run_id} queued with this config as edited.")
        if action == "save_as":
            if not request.form.get("save_as_name", "").strip():
                return again("Type a name for the copy, then press “Save as”.", status=400)
            return _saved_elsewhere(result.config, request.form["save_as_name"])
        with library_errors():
            version = library().save(name, result.config, expected_version=request.form.get("version") or None)
    except ApiError as exc:
        return again(exc.error if isinstance(exc.detail, list) else f"{exc.error}: {exc.detail}",
                     exc.detail if isinstance(exc.detail, list) else None, exc.status)
    if not is_htmx():
        return redirect(url_for(".edit", name=name, tab=tab, saved=version), 303)
    stored = Stored(name, result.config, version, stored.read_only)  # as save wrote it: no second read
    # saved even with a missing image folder (it may be made later); the summary says what to fix first
    missing = missing_folder_errors(result.config, set()) if isinstance(result.config.get("concepts"), list) else []
    message = "Saved, but a run cannot start until the settings below are fixed." if missing else "Saved."
    return render_editor(stored, result.config, result.config, tab=tab, message=message, report=report)


def _saved_elsewhere(config: dict, typed_name: str):
    with library_errors():
        new = sanitize_name(typed_name)
        library().save(new, config, create=True)
    flash(f"Saved as “{new}”.")
    target = url_for(".edit", name=new)
    if is_htmx():
        return "", 204, {"HX-Redirect": target}
    return redirect(target, 303)


def _add_concept(config: dict, argument: str, form) -> str:
    """The folder typed, or a library dataset's (its "Add" button names it; or the select)."""
    path = argument.strip() or form.get("new_concept_path", "").strip() or form.get("new_concept_dataset", "").strip()
    if not path:
        return "Type the image folder of the concept to add, or pick a dataset from the library."
    config["concepts"] = [*(config.get("concepts") or []), new_concept(path)]
    return f"Concept {path} added (not saved yet)."


def _add_sample(config: dict, _argument: str, form) -> str:
    config["samples"] = [*(config.get("samples") or []), new_sample(form.get("new_sample_prompt", ""))]
    return "Sample added (not saved yet)."


def _remover(name: str):
    def remove(config: dict, argument: str, _form) -> str:
        items = config.get(name) or []
        if not argument.isdigit() or int(argument) >= len(items):
            return f"No such entry in {name}."
        del items[int(argument)]
        return f"Removed from {name} (not saved yet)."
    return remove


LIST_ACTIONS = {"add_concept": _add_concept, "add_dataset": _add_concept, "remove_concept": _remover("concepts"),
                "add_sample": _add_sample, "remove_sample": _remover("samples")}


@bp.post("/check")
def check_field():
    """One input's error while it is typed (htmx sends the input's name in HX-Trigger-Name)."""
    path = request.headers.get("HX-Trigger-Name") or next(iter(request.form), "")
    message = (check_text(path, request.form.get(path)) or folder_text(path, request.form.get(path))) if path \
        else "no field given"
    return render_template("configs/_field_error.html", id=input_id(path), message=message or "")


@bp.get("/<path:name>/concepts/stats")
def concept_stats(name: str):
    """A concept's figures once its scan is done (the placeholder asks again until then)."""
    args = request.args
    concept = {"path": args.get("path", ""), "include_subdirectories": args.get("sub") == "1",
               "text": {"prompt_source": args.get("source") or "sample", "prompt_path": args.get("prompt_path", "")}}
    stats = scanner(current_app).cached(concept, workspace(), read_roots())
    stats_args = {key: args.get(key, "") for key in ("path", "sub", "source", "prompt_path", "saved")}
    stats_args["index"] = args.get("index", type=int, default=0)
    return render_template("configs/_concept_stats.html", stats=stats, stats_args=stats_args, name=name,
                           thumbnails_saved=args.get("saved") == "1")


@bp.get("/<path:name>/concepts/<int:index>/thumbnails/<int:number>")
def thumbnail(name: str, index: int, number: int):
    """One of the first few images of a saved config's concept: never any other file."""
    _, config, _ = load_for_editing(name)
    concepts = config.get("concepts") or []
    concept = concepts[index] if index < len(concepts) and isinstance(concepts[index], dict) else {}
    stats = scanner(current_app).wait(concept, workspace(), read_roots())
    files = stats.first_images if stats is not None else []
    if number >= len(files):
        raise ApiError(404, "no such thumbnail", f"concept {index} of {name!r} has no image {number}")
    try:  # checked where it is opened: a symlinked or hard-linked file, or one swapped since the scan
        handle = confined.open_file(files[number], read_roots())
    except OSError:
        raise ApiError(404, "no such thumbnail", f"concept {index} of {name!r} has no image {number}") from None
    info = os.fstat(handle.fileno())
    return send_file(handle, download_name=os.path.basename(files[number]), conditional=True, max_age=300,
                     etag=f"{info.st_mtime_ns:x}-{info.st_size:x}", last_modified=info.st_mtime)
