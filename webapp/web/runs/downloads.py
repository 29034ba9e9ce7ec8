"""Downloads of a run's outputs, saves and backups (a backup folder streamed as a zip), with the
sha256 recorded at upload (the listing, checksums and zips: ``run_files``)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file
from markupsafe import escape

from webapp.web.runs.files import find_file, recorded_sha256, run_dir, zip_stream

bp = Blueprint("downloads", __name__)


@bp.get("/runs/<int:run_id>/files/<kind>/<name>")
def download(run_id: int, kind: str, name: str):
    _, entry = find_file(run_id, kind, name)
    if kind == "backup":
        response = Response(zip_stream(entry["path"]), mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="run{run_id}-{name}.zip"'
        return response
    return send_file(entry["path"], as_attachment=True, download_name=name, conditional=True)


@bp.get("/runs/<int:run_id>/files/<kind>/<name>/sha256")
def checksum(run_id: int, kind: str, name: str):
    """JSON for scripts; a partial for the run page (htmx loads it after the page). The sums are the
    ones recorded at upload (a backup: one per file inside it)."""
    _, entry = find_file(run_id, kind, name)
    sums = recorded_sha256(run_id, run_dir(run_id), entry)
    if request.headers.get("HX-Request"):
        return _checksum_partial(sums)
    return jsonify(kind=kind, name=name, size=entry["size"], **sums)


def _checksum_partial(sums: dict) -> str:
    if "files" in sums:
        missing = [n for n, digest in sums["files"].items() if not digest]
        if missing or not sums["files"]:
            return f'<span class="hint" title="no sha256 recorded at upload for {escape(", ".join(missing))}">–</span>'
        lines = "\n".join(f"{digest}  {n}" for n, digest in sums["files"].items())
        return (f'<button type="button" class="sha256 link-like" data-copy="{escape(lines)}" title="{escape(lines)}: '
                f'click to copy">{len(sums["files"])} files</button>')
    digest = sums["sha256"]
    if not digest:
        return '<span class="hint" title="no sha256 recorded at upload for this file as it is now">–</span>'
    # 12 hex digits tell files apart on a page; the whole sum is one click (copied) or a hover away
    return (f'<button type="button" class="sha256 link-like" data-copy="{digest}" title="sha256 {digest}: '
            f'click to copy">{digest[:12]}…</button>')
