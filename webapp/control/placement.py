"""Where a queued run may go, and why it waits: one rule for the dispatcher (which hands it out)
and the run pages (which say why it has not started). A target names a worker, labels and a GPU
count (store.assignments.target_of, plus the run's gpus)."""
from __future__ import annotations


def eligible(name: str, beat: dict, target: dict) -> bool:
    if target.get("worker") and target["worker"] != name:
        return False
    if target.get("gpus", 1) > len(beat.get("devices") or [0]):
        return False  # a multi-GPU run needs a worker that owns that many devices
    return set(target.get("labels") or ()) <= set(beat.get("labels") or ())


def waiting_reason(target: dict, beats: dict, busy: set, token_ok=lambda name: True) -> str:
    """Why no worker takes the run now (the dispatcher found none idle and able)."""
    if target.get("worker"):
        name = target["worker"]
        why = (f"{target['only_there']}; " if target.get("only_there")
               else "its backups are there; " if target.get("resume") else "")
        if name not in beats:
            return f"for worker {name} ({why}it is not connected)"
        if beats[name].get("draining"):
            return f"for worker {name} ({why}it is draining)"
        return f"for worker {name} ({why}it is busy)"
    labels = sorted(target.get("labels") or ())
    able = [n for n, beat in beats.items() if eligible(n, beat, target)]
    gpus = target.get("gpus", 1)
    if gpus > 1 and beats and not able:
        largest = max(beats, key=lambda n: len(beats[n].get("devices") or [0]))
        return (f"for a worker with {gpus} GPUs: the largest has {len(beats[largest].get('devices') or [0])} "
                f"({largest})")
    if labels and not able:
        return f"no connected worker has the label{'s' if len(labels) > 1 else ''} {', '.join(labels)}"
    if not beats:
        return "no worker is connected"
    if not any(token_ok(n) for n in able):
        return "no connected worker has a valid worker token (otweb token create --worker NAME)"
    return f"every worker that can take it is busy ({len(able)} of {len(beats)})"


def why_waiting(target: dict, beats: dict, busy: set) -> str | None:
    """For a page: None while a worker that can take the run is idle (it starts at the next turn),
    else the dispatcher's reason."""
    if any(name not in busy and not beat.get("run_id") and not beat.get("draining") and eligible(name, beat, target)
           for name, beat in beats.items()):
        return None
    return waiting_reason(target, beats, busy)
