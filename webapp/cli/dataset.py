"""`otweb dataset push DIR NAME`: a folder into a library dataset, through the same HTTP API as the
browser (POST .../uploads with the file list, PUT each chunk), with an API token. Resumable: the
upload's id is kept under ~/.cache/otweb/, and a second push of the same files sends only what the
server does not have yet."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click

from webapp.settings import env_text

TIMEOUT_S = 120


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: bytes | None = None, json_body=None) -> tuple[int, dict]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {"error": exc.reason}


def listed(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = Path(root) / name
                found.append((path.relative_to(folder).as_posix(), path))
    return found


def _memory(url: str, name: str, folder: Path) -> Path:
    key = hashlib.sha256(f"{url}\0{name}\0{folder.resolve()}".encode()).hexdigest()[:24]
    return Path.home() / ".cache" / "otweb" / "uploads" / f"{key}.json"


def opened(api: Api, key: str, files: list, memory: Path) -> dict:
    """The upload to go on with: the one kept for these same files if the server still has it."""
    signature = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    try:
        kept = json.loads(memory.read_text())
    except (OSError, ValueError):
        kept = None
    if kept and kept.get("signature") == signature:
        status, state = api.call("GET", f"/api/datasets/{key}/uploads/{kept['id']}")
        if status == 200 and not state["complete"]:
            click.echo(f"resuming: {state['received']} of {state['bytes']} bytes arrived")
            return state
    status, state = api.call("POST", f"/api/datasets/{key}/uploads", json_body={"files": files})
    if status != 201:
        raise click.ClickException(f"{status} {state.get('error')}: {state.get('detail')}")
    memory.parent.mkdir(parents=True, exist_ok=True)
    memory.write_text(json.dumps({"id": state["id"], "signature": signature}))
    return state


def send(api: Api, key: str, state: dict, paths: dict, chunk: int | None = None) -> None:
    """Each file's missing bytes, in chunks of the server's size (or smaller: ``chunk``)."""
    chunk = min(chunk or state["chunk_size"], state["chunk_size"])
    for item in state["files"]:
        offset = item["received"]
        with open(paths[item["path"]], "rb") as handle:
            while offset < item["size"] and not item.get("result"):
                handle.seek(offset)
                status, answer = api.call("PUT", f"/api/datasets/{key}/uploads/{state['id']}/{item['index']}/{offset}",
                                          body=handle.read(chunk))
                if status == 409 and isinstance(answer.get("detail"), dict):
                    offset = answer["detail"]["received"]
                    continue
                if status != 200:
                    raise click.ClickException(f"{item['path']}: {status} {answer.get('error')}: {answer.get('detail')}")
                offset, item["result"] = answer["received"], answer["result"]
        click.echo(f"  {item['path']}")


def checked(api: Api, key: str, upload_id: str, timeout_s: float = 600) -> dict:
    """The upload's state once the server has checked every file (images decode after their last chunk)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, state = api.call("GET", f"/api/datasets/{key}/uploads/{upload_id}")
        if status != 200:
            raise click.ClickException(f"{status} {state.get('error')}: {state.get('detail')}")
        if state["complete"] or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@click.group(name="dataset")
def dataset_commands():
    """The dataset library of a running server."""


@dataset_commands.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("name")
@click.option("--url", default=None, help="The server (env OTWEB_URL; default http://127.0.0.1:8000).")
@click.option("--token", default=None, help="An operator's API token (env OTWEB_TOKEN; otweb token create).")
def push(folder, name, url, token):
    """Upload FOLDER's images and captions into the dataset NAME (made when missing); resumes."""
    url = url or env_text("OTWEB_URL", "http://127.0.0.1:8000")
    api = Api(url, token or env_text("OTWEB_TOKEN"))
    status, answer = api.call("POST", "/api/datasets", json_body={"name": name})
    if status not in (201, 409):
        raise click.ClickException(f"{status} {answer.get('error')}: {answer.get('detail')}")
    found = listed(folder)
    if not found:
        raise click.ClickException(f"{folder} holds no files")
    files = [{"path": rel, "size": path.stat().st_size} for rel, path in found]
    memory = _memory(url, name, folder)
    state = opened(api, urllib.parse.quote(name), files, memory)
    send(api, urllib.parse.quote(name), state, dict(found))
    final = checked(api, urllib.parse.quote(name), state["id"])
    memory.unlink(missing_ok=True)
    click.echo(f"{final['stored']} files stored in {name}; {len(final['skipped'])} skipped; "
               f"{len(final['broken'])} broken; {len(final.get('refused', []))} archives refused")
    for item in final["broken"] + final["skipped"] + final.get("refused", []):
        click.echo(f"  {item['path']}: {item['why']}", err=True)
    sys.exit(1 if final["broken"] or final.get("refused") else 0)
