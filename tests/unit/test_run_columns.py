"""The run's kind, model type and method: columns written when a run is created, filled once for the
runs of a workspace made before them, and the ones every list filters on (through an index, never
a config's JSON parsed at query time); a playground session is never among the runs."""
from __future__ import annotations

import sqlite3

import pytest

from support.apps import make_app
from support.paths import ROOT, database
from webapp import store
from webapp.protocol import PLAYGROUND_MARKER

OLD_WORKSPACE = ROOT / "tests" / "support" / "old_workspaces" / "a4c8b64.sql"  # made by that commit's code


@pytest.fixture
def db(app):
    conn = store.connect(app.config["DATABASE"])
    yield conn
    conn.close()


def listed(client, query: str = "") -> list[str]:
    answer = client.get(f"/api/runs?limit=500{query}")
    assert answer.status_code == 200, answer.json
    return sorted(run["config_name"] for run in answer.json["runs"])


def test_a_run_records_its_kind_model_type_and_method(db):
    lora = store.create_run(db, "cats", {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})
    session = store.create_run(db, "play", {PLAYGROUND_MARKER: {"source": "cats.safetensors"}})
    rows = {r["id"]: tuple(r) for r in db.execute("SELECT id, kind, model_type, method FROM runs")}
    assert rows == {lora: (lora, "training", "STABLE_DIFFUSION_15", "LORA"), session: (session, "playground", None, None)}


def test_filters_read_the_columns_through_an_index(client, db):
    store.create_run(db, "cats", {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})
    dogs = store.create_run(db, "dogs", {"model_type": "FLUX_DEV_1", "training_method": "FINE_TUNE"})
    store.set_started_by(db, dogs, "alice")
    store.create_run(db, "play", {PLAYGROUND_MARKER: {"source": "cats.safetensors"}})
    assert listed(client) == ["cats", "dogs"]  # never the playground session
    assert listed(client, "&method=LORA") == ["cats"] and listed(client, "&model_type=FLUX_DEV_1") == ["dogs"]
    assert listed(client, "&started_by=alice") == ["dogs"] and listed(client, "&started_by=local") == ["cats"]
    assert listed(client, "&state=queued&config=og") == ["dogs"]
    statements = []
    db.set_trace_callback(statements.append)
    for name, value in (("state", "queued"), ("model_type", "X"), ("method", "LORA"), ("started_by", "alice"), ("config", "a")):
        store.history(db, {name: value}, limit=50, before=dogs)
    store.playground_sessions(db)
    store.distinct_values(db)
    db.set_trace_callback(None)
    for sql in statements:
        assert "json_extract" not in sql
        plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql.replace("?", "NULL")))
        assert "SCAN runs" not in plan.replace("SCAN runs USING", "INDEXED"), (sql, plan)


def test_filter_clause_picks_runs_for_other_callers(db):
    cats = store.create_run(db, "cats", {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})
    store.create_run(db, "play", {PLAYGROUND_MARKER: {"source": "cats.safetensors"}})
    sql, params = store.run_columns.filter_clause({"method": "LORA", "state": "", "nonsense": "x"})
    assert [r[0] for r in db.execute(f"SELECT id FROM runs WHERE {sql}", params)] == [cats]
    sql, params = store.run_columns.filter_clause({}, kind=None)
    assert len(db.execute(f"SELECT id FROM runs WHERE {sql}", params).fetchall()) == 2


def test_a_workspace_made_before_the_columns_is_filled_once(workspace, config_dir, redis_url, redis_server):
    with sqlite3.connect(database(workspace)) as old:
        old.executescript(OLD_WORKSPACE.read_text())
    redis_server.flushall()
    client = make_app(workspace, config_dir, redis_url).test_client()
    assert listed(client) == ["cats", "dogs", "plain"]
    assert listed(client, "&method=LORA") == ["cats"] and listed(client, "&started_by=alice") == ["cats"]
    assert listed(client, "&model_type=FLUX_DEV_1") == ["dogs"]
    sessions = client.get("/api/playground").json["sessions"]
    assert [s["source"] for s in sessions] == ["cats.safetensors"]
    html = client.get("/runs").text
    assert "cats" in html and "playground" not in html.split("<tbody>")[1]
    assert client.get("/samples?source=playground").text.count('class="sample"') == 1
    assert client.get("/models?method=LORA").status_code == 200
