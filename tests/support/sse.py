"""The one SSE reader of the tests and the benchmarks: frames as they arrive (SSEReader), or read
until a condition (read_sse)."""
from __future__ import annotations

import json
import time

import requests


def parse_frame(raw: str) -> dict:
    """One frame's lines -> {"data": joined data lines or None, "comments": [...], field: value}."""
    frame = {"data": [], "comments": []}
    for line in raw.split("\n"):
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            frame["comments"].append(value)
        elif name == "data":
            frame["data"].append(value)
        else:
            frame[name] = value
    frame["data"] = "\n".join(frame["data"]) if frame["data"] else None
    return frame


class SSEReader:
    """Reads an event stream frame by frame (requests hands chunks on as they arrive)."""

    def __init__(self, base_url: str, path: str = "/api/events", headers=None, timeout=(5, 10)):
        self.response = requests.get(base_url + path, headers=headers, stream=True, timeout=timeout)
        self._chunks = self.response.iter_content(chunk_size=None)
        self._buffer = b""

    def frame(self) -> dict:
        """The next frame; StopIteration when the stream ends."""
        while b"\n\n" not in self._buffer:
            self._buffer += next(self._chunks)
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        return parse_frame(raw.decode())

    def frames_until_id(self, seq: int, timeout_s: float = 10) -> list[dict]:
        """Every frame that is not a heartbeat, up to the one with id == seq."""
        frames, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = self.frame()
            if frame["comments"] or "retry" in frame:
                continue
            frames.append(frame)
            if frame.get("id") == str(seq):
                return frames
        raise AssertionError(f"no frame with id {seq} within {timeout_s} s; got {frames}")

    def close(self) -> None:
        self.response.close()


def read_sse(url: str, until, timeout: float = 180, headers: dict | None = None, max_events: int | None = None):
    """Read SSE frames {event, id, data} until until(frame) is true (or the stream ends); returns them all."""
    frames, deadline = [], time.monotonic() + timeout
    reader = SSEReader(url, "", headers=headers or {}, timeout=(5, 30))
    try:
        assert reader.response.status_code == 200, reader.response.text
        while True:
            try:
                frame = reader.frame()
            except StopIteration:
                return frames
            if time.monotonic() > deadline:
                raise TimeoutError(f"SSE: condition not met; got {[f.get('event') for f in frames][-20:]}")
            if frame["data"] is None:
                continue
            frames.append({key: frame[key] for key in ("event", "id", "data") if key in frame})
            if until(frames[-1]) or (max_events and len(frames) >= max_events):
                return frames
    finally:
        reader.close()


def json_frames(frames):
    return [json.loads(f["data"]) for f in frames]
