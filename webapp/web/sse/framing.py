"""SSE framing: flask-sse's message format, made safe (one event's ``event:``, ``data:``, ``id:`` lines)."""
from __future__ import annotations

import re

import flask_sse

from webapp.protocol import dumps

HEARTBEAT = ": keep-alive\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the only line ends SSE knows (str.splitlines knows more)


class Message(flask_sse.Message):
    """flask-sse's Message, fixed: CR/LF (and NUL) refused in ``event``/``id`` because they would
    end the field and let data forge frames; ``id`` 0 kept; multi-line and empty data framed right."""

    # checked on every assignment, including flask-sse's own __init__
    type = property(lambda self: self._type, lambda self, v: setattr(self, "_type", _field("event", v)))
    id = property(lambda self: self._id, lambda self, v: setattr(self, "_id", _field("id", v)))

    def to_dict(self):
        fields = {"data": self.data, "type": self.type, "id": self.id, "retry": self.retry}
        return {k: v for k, v in fields.items() if v is not None or k == "data"}

    def __str__(self):
        lines = [] if self.type is None else [f"event: {self.type}"]
        if self.data is not None:  # None: an id-only frame (moves Last-Event-ID, fires no event)
            data = self.data if isinstance(self.data, str) else dumps(self.data)
            # "data: " with the space: a parser strips one space, so data that starts with one survives
            lines += [f"data: {line}" for line in _LINE_BREAK.split(data)]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {int(self.retry)}")
        return "\n".join(lines) + "\n\n"


def _field(name: str, value):
    if value is not None and any(c in str(value) for c in "\r\n\0"):
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL: {value!r}")
    return value
