"""Keyset pages (``before=<id>``) on every list, in the pages and the JSON API: no duplicates and no
gaps while runs are added between pages, each page's next cursor, and a cursor that is no whole
number refused with a 400."""
from __future__ import annotations

import re

import pytest

from support.model_runs import record_run
from webapp import store
from webapp.protocol import PLAYGROUND_MARKER, Event, make_event
from webapp.web.runs.pages import HISTORY_PAGE


@pytest.fixture
def db(app):
    conn = store.connect(app.config["DATABASE"])
    yield conn
    conn.close()


def trainings(db, count: int, **config) -> list[int]:
    return [store.create_run(db, f"run-{n}", {"model_type": "STABLE_DIFFUSION_15", **config}) for n in range(count)]


def api_pages(client, url: str, key: str, between=lambda: None) -> list[int]:
    """Every id a list gives, following next_before; ``between`` runs after each page."""
    ids, before = [], None
    while True:
        answer = client.get(url + (f"&before={before}" if before else ""))
        assert answer.status_code == 200, answer.json
        ids += [row["id"] for row in answer.json[key]]
        before = answer.json["next_before"]
        between()
        if before is None:
            return ids


def test_run_pages_have_no_gaps_or_duplicates_while_runs_start(client, db):
    made = trainings(db, 23)
    ids = api_pages(client, "/api/runs?limit=5", "runs", between=lambda: trainings(db, 2))
    assert ids == sorted(made, reverse=True)  # the runs added meanwhile are newer: on no later page
    first = client.get("/api/runs?limit=5").json
    assert first["next_before"] == first["runs"][-1]["id"] and first["runs"][0]["id"] > made[-1]


def test_the_runs_page_links_to_older_runs(client, db):
    made = trainings(db, HISTORY_PAGE + 5, training_method="LORA")
    html = client.get("/runs?method=LORA").text
    shown = {int(i) for i in re.findall(r'data-run-id="(\d+)"', html)}
    assert len(shown) == HISTORY_PAGE and max(made) in shown
    link = re.search(r'href="(/runs\?[^"]*before=(\d+)[^"]*)" *>Older runs', html.replace("&amp;", "&"))
    assert link and "method=LORA" in link.group(1)
    older = client.get(link.group(1)).text
    rest = {int(i) for i in re.findall(r'data-run-id="(\d+)"', older)}
    assert rest == set(made) - shown and "Older runs" not in older and "Newest runs" in older


def test_model_versions_page_in_every_order(app, client):
    for n in range(4):
        record_run(app, name=f"lora-{n}", files=False)
    for order in ("newest", "loss", "step"):
        whole = [v["id"] for v in client.get(f"/api/models?order={order}&limit=500").json["versions"]]
        assert len(whole) == 12
        assert api_pages(client, f"/api/models?order={order}&limit=5", "versions") == whole, order
    html = client.get("/models?kind=save").text
    assert "Older versions" not in html  # 4 saves: one page


def test_samples_sessions_and_events_page_back(client, db):
    run_id = trainings(db, 1)[0]
    for step in range(7):
        store.append_event(db, run_id, make_event(Event.SAMPLE_DEFAULT, path=f"{step}.png", prompt="p", global_step=step))
    samples = api_pages(client, f"/api/samples/list?run={run_id}&limit=3", "samples")
    assert samples == sorted(samples, reverse=True) and len(set(samples)) == 7
    events, before = [], None
    while True:
        page = client.get(f"/api/runs/{run_id}/events?limit=3" + (f"&before={before}" if before else "&before=999999")).json
        events = [e["seq"] for e in page["events"]] + events
        before = page["next_before"]
        if before is None:
            break
    assert events == [e["seq"] for e in client.get(f"/api/runs/{run_id}/events").json["events"]]
    sessions = [store.create_run(db, "playground", {PLAYGROUND_MARKER: {"source": "x"}}) for _ in range(23)]
    db.execute("UPDATE runs SET state = 'completed'")
    listed = api_pages(client, "/api/playground?x=1", "sessions")
    assert listed == sorted(sessions, reverse=True)
    html = client.get("/playground").text
    assert "Older sessions" in html and f"#{sessions[0]} " not in html
    assert f"#{sessions[0]} " in client.get(f"/playground?before={sessions[3]}").text


@pytest.mark.parametrize("url", ["/api/runs", "/api/models", "/api/samples/list?run=1", "/api/playground",
                                 "/api/runs/1/events", "/runs", "/models", "/samples", "/playground"])
@pytest.mark.parametrize("cursor", ["abc", "-3", "0", "1.5", str(2**63)])
def test_a_cursor_that_is_no_id_is_refused(client, db, url, cursor):
    trainings(db, 1)
    answer = client.get(url + ("&" if "?" in url else "?") + f"before={cursor}",
                        headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid cursor" and answer.json["detail"][0]["field"] == "before"
