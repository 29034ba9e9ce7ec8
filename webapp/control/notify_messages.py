"""What a notification says, and each webhook format's request: generic JSON (signed), Slack
(``{"text"}``), Discord (``{"content"}``) and ntfy (the text as the body, Title and Click headers).
Links are paths under the app (``runs/7``); a webhook gets them absolute with OTWEB_PUBLIC_URL."""
from __future__ import annotations

import json
import time

from webapp.control import webhook_http

TITLES = {"run_completed": "finished", "run_failed": "failed", "run_stopped": "was stopped",
          "run_interrupted": "was interrupted", "sample": "has a new sample", "saved": "wrote a save or backup"}


def describe(kind: str, run: dict | None, seq: int | None, data: dict, sample_id: int | None = None) -> dict:
    """The message of one notification: what the browser shows and every webhook format carries."""
    run_id = run["id"] if run else None
    name = run["config_name"] if run else ""
    if kind == "queue_empty":
        title, text = "Queue empty", "The last queued run has ended; nothing is waiting."
    elif kind == "test":
        title, text = "Test notification", "A test from OneTrainer Web: this destination works."
    else:
        title = f"Run #{run_id} {TITLES.get(kind, kind)}"
        detail = data.get("reason") or data.get("prompt") or (data.get("artifact") or {}).get("path") or ""
        text = f"{name}: {title.split(' ', 2)[2]}" + (f" ({detail})" if detail else "")
    return {"kind": kind, "seq": seq, "run_id": run_id, "config_name": name, "state": run["state"] if run else None,
            "title": title, "text": text, "link": f"runs/{run_id}" if run_id else "",
            "sample_id": sample_id,
            "image": f"api/samples/{sample_id}/image" if sample_id else None, "time": time.time()}


def absolute(path: str | None, base: str) -> str | None:
    return f"{base}/{path}" if path and base else None


def request_for(fmt: str, message: dict, secret: str | None, base_url: str) -> tuple[bytes, dict]:
    """The body and headers of a webhook request in its format."""
    link = absolute(message.get("link"), base_url)
    text = message["text"] + (f" {link}" if link and fmt in ("slack", "discord") else "")
    if fmt == "slack":
        return _json({"text": text}), {}
    if fmt == "discord":
        return _json({"content": text}), {}
    if fmt == "ntfy":
        headers = {"Content-Type": "text/plain; charset=utf-8", "Title": message["title"]}
        if link:
            headers["Click"] = link
        return message["text"].encode(), headers
    body = _json({**message, "url": link, "image_url": absolute(message.get("image"), base_url)})
    return body, ({webhook_http.SIGNATURE_HEADER: webhook_http.sign(secret, body)} if secret else {})


def _json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def send(subscription, message: dict, base_url: str, sender=None) -> tuple[int | None, str | None]:
    """One attempt: (HTTP status, None) on a 2xx, else (status or None, why it failed)."""
    body, headers = request_for(subscription["format"], message, subscription["secret"], base_url)
    headers.setdefault("Content-Type", "application/json")
    headers["User-Agent"] = "otweb-notifier"
    try:
        answer = (sender or webhook_http.post)(subscription["url"], body, headers)
    except webhook_http.Refused as exc:
        return None, f"refused: {exc}"
    except OSError as exc:
        return None, f"network: {exc}"
    if 200 <= answer.status < 300:
        return answer.status, None
    return answer.status, f"HTTP {answer.status}"
