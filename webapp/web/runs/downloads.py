"""Downloads of a run's outputs, saves and backups (a backup folder streamed as a zip), with sha256
(the listing, checksums and zips: ``run_files``)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file

from webapp.web.runs.files import cached_sha256, find_file, run_dir, zip_stream

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
    """JSON for scripts; a <code> partial for the run page (htmx loads it after the page)."""
    _, entry = find_file(run_id, kind, name)
    digest = cached_sha256(run_dir(run_id), entry)
    if request.headers.get("HX-Request"):
        # 12 hex digits tell files apart on a page; the whole sum is one click (copied) or a hover away
        return (f'<button type="button" class="sha256 link-like" data-copy="{digest}" title="sha256 {digest}: '
                f'click to copy">{digest[:12]}…</button>')
    return jsonify(kind=kind, name=name, sha256=digest, size=entry["size"])
