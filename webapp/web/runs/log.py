"""The run page's log: the tail of the trainer's stdout/stderr as a person reads it. Progress bars
(tqdm redraws a line with carriage returns and ANSI codes) become their last state, one line per
bar; warnings are marked so the page can hide them; the first error is marked to jump to.
For anyone but an admin the log is ``folded``: a traceback shows only its last line (the error),
and a server path only its last part (``…/model.safetensors``): the README's promise to viewers."""
from __future__ import annotations

import re

from webapp.settings import LOG_NAME
from webapp.web.runs.files import run_dir

LOG_TAIL_BYTES = 256 * 1024
LOG_LINES = 400
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PROGRESS = re.compile(r"^(?P<label>[^|\n]{0,80}?):?\s*\d{1,3}%\|")  # "Caching: 45%|####   | 9/20 [..]"
ERROR = re.compile(r"Traceback \(most recent call last\)|\b(?:[A-Z]\w*Error|Exception|CRITICAL|FATAL)\b")
TRACEBACK = "Traceback (most recent call last)"
SERVER_PATH = re.compile(r"(?:^|(?<=[\s'\"(=\[]))/(?:[^\s'\"()\[\]<>,:]+/)+(?P<last>[^\s'\"()\[\]<>,:]*)")
WARNING = re.compile(r"\w+Warning\b|\bwarn(?:ings?)?\b", re.IGNORECASE)  # "... to silence this warning."


def read_tail(run_id: int) -> list[str]:
    path = run_dir(run_id) / LOG_NAME
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = text.split("\n")
    return lines[1:] if size > LOG_TAIL_BYTES else lines  # the first is cut


def clean(line: str) -> str:
    """What a terminal would show of the line: the last redraw after a carriage return, no colours."""
    line = ANSI.sub("", line).rstrip("\r")
    line = line.rsplit("\r", 1)[-1]
    return CONTROL.sub("", line.replace("\t", "    ")).rstrip()


def shorten_paths(line: str) -> str:
    """Each absolute path as its last part: where the server keeps things is not a viewer's to read."""
    return SERVER_PATH.sub(lambda match: "…/" + match.group("last"), line)


def folded(lines: list[str]) -> list[str]:
    """Tracebacks as their last line (the exception), paths shortened."""
    kept, inside = [], False
    for line in lines:
        if TRACEBACK in line:
            inside = True
            continue
        if inside and line.startswith(" "):
            continue  # a frame ("  File ...") or its source line
        inside = False
        kept.append(shorten_paths(line))
    return kept


def log_lines(run_id: int, query: str = "", fold: bool = False) -> list[str]:
    """The cleaned tail (``fold``: for a viewer, see ``folded``), optionally only the lines
    containing query."""
    lines, bar = [], None
    for raw in read_tail(run_id):
        line = clean(raw)
        if not line:
            continue
        match = PROGRESS.match(line)
        label = match.group("label").strip() if match else None
        if label is not None and label == bar and lines:
            lines[-1] = line  # the same bar redrawn on a new line: keep its newest state
            continue
        bar = label
        lines.append(line)
    if fold:
        lines = folded(lines)
    if query:
        lines = [line for line in lines if query.lower() in line.lower()]
    return lines[-LOG_LINES:]


def log_view(run_id: int, query: str = "", fold: bool = False) -> dict:
    """Lines with their level, the index of the first error, the number of warning lines."""
    rows, first_error, warnings = [], None, 0
    previous = ""
    for index, line in enumerate(log_lines(run_id, query, fold)):
        indented = line.startswith("  ")  # a traceback's frame, or the source line a warning quotes
        if ERROR.search(line) or (indented and previous == "error"):
            level = "error"
            first_error = index if first_error is None else first_error
        elif WARNING.search(line) or (indented and previous == "warning"):
            level = "warning"
            warnings += 1
        else:
            level = ""
        rows.append({"text": line, "level": level})
        previous = level
    return {"lines": rows, "first_error": first_error, "warnings": warnings}
