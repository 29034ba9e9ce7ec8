"""A playground does not hold training hostage: when a training run waits and the only worker that
could take it holds an open playground session, the dispatcher closes that session (a stop
command, as its Close button sends) and says so on both: the session's log names the run it made
room for (the playground page shows it), the run's status says the playground is closing.

A playground is an interactive job on a trained model: closing it loses nothing but the loaded
model, while a queued training waits for as long as the session stays open (10 idle minutes)."""
from __future__ import annotations

import json

from webapp import store
from webapp.control.placement import eligible
from webapp.protocol import Command, Event, make_command, make_event
from webapp.settings import commands_key


def yielding_session(conn, run: dict, target: dict, beats: dict) -> dict | None:
    """The running playground session on a worker that could take ``run``, or None."""
    if store.samples.is_playground(run):
        return None
    session = store.runs.open_playground(conn)
    if session is None or session["state"] != "running" or not session.get("worker"):
        return None
    beat = beats.get(session["worker"])
    return session if beat is not None and eligible(session["worker"], beat, target) else None


def close_for(conn, redis_client, sink, session: dict, run: dict) -> None:
    """Ask the session to close (once: a stop asked for already is not asked again) so ``run`` can start."""
    if session["stop_requested"]:
        return
    redis_client.rpush(commands_key(session["worker"], session["id"]), json.dumps(make_command(Command.STOP)))
    store.mark_stop_requested(conn, session["id"])
    text = f"closing: training run #{run['id']} is waiting for this worker"
    sink.emit(session["id"], make_event(Event.STATUS, text=text))
    sink.emit(session["id"], make_event(Event.LOG, text=f"playground closed to let run #{run['id']} train",
                                        level="info", yielded_to=run["id"]))


def waiting_text(session: dict) -> str:
    return f"the playground (#{session['id']}) holds worker {session['worker']}: it closes to let this run start"
