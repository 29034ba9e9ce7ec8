"""A run's start as a list of stages (queued, starting the trainer, loading the model, preparing
the data, training, saving), the way a CI run view lists its steps: each with when it began and
how long it took, the current one live with its count (``caching 12/48``)."""
from __future__ import annotations

from webapp import store
from webapp.protocol import Event, RunState

# (key, label, the status texts that mean this stage: a prefix each)
STAGES = (
    ("queued", "Waiting for a worker", ()),
    ("starting", "Starting the trainer", ("starting",)),
    ("dataset", "Sending the dataset", ("sending dataset", "dataset ready")),
    ("loading", "Loading the model", ("loading model", "resuming")),
    ("data", "Preparing the data", ("preparing data", "caching")),
    ("training", "Training", ("training", "sampling", "creating backup")),
    ("saving", "Saving", ("saving",)),
)
STAGE_KEYS = [key for key, _, _ in STAGES]
EVENTS_READ = 5000  # status events are a few a second at most while caching


def stage_of(text: str) -> str | None:
    text = (text or "").lower()
    for key, _, prefixes in STAGES:
        if any(text.startswith(prefix) for prefix in prefixes):
            return key
    return None


def run_stages(conn, run: dict) -> list[dict]:
    """Each stage: key, label, state (done, current, pending, skipped), began (epoch seconds or
    None), seconds (for a finished stage) and detail (the newest status text within it)."""
    began: dict[str, float] = {"queued": run["created_at"]}
    detail: dict[str, str] = {}
    if run.get("started_at"):
        began["starting"] = run["started_at"]
    for event in store.first_events(conn, run["id"], Event.STATUS.value, EVENTS_READ):
        text = event["data"].get("text", "")
        key = stage_of(text)
        if key:
            began.setdefault(key, event["time"])
            detail[key] = text
    current = _current_stage(run, began)
    ended = run.get("finished_at")
    stages, reached = [], [key for key in STAGE_KEYS if key in began]
    for key, label, _ in STAGES:
        entry = {"key": key, "label": label, "began": began.get(key), "seconds": None,
                 "detail": detail.get(key, "") if key in ("dataset", "data", "loading") else ""}
        if key == current:
            entry["state"] = "current"
        elif key in began:
            entry["state"] = "done"
        else:
            later = [k for k in reached if STAGE_KEYS.index(k) > STAGE_KEYS.index(key)]
            entry["state"] = "skipped" if later else "pending"
        if entry["state"] in ("done", "current") and key in began:
            following = [began[k] for k in STAGE_KEYS[STAGE_KEYS.index(key) + 1:] if k in began]
            end = min(following) if following else ended
            if end:
                entry["seconds"] = max(0.0, end - began[key])
        stages.append(entry)
    return stages


def _current_stage(run: dict, began: dict) -> str | None:
    """The newest stage reached, while the run is active (a finished run has none live)."""
    if run["state"] == RunState.QUEUED.value:
        return "queued"
    if run["state"] != RunState.RUNNING.value:
        return None
    reached = [key for key in STAGE_KEYS if key in began]
    return reached[-1] if reached else "starting"


