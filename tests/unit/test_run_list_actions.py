"""The runs list and the run page's actions: pick runs to compare, a loss sparkline and the newest
sample per run; Run again queues the run's config anew; Delete sits in a menu; checksums shortened."""
from __future__ import annotations

from test_runs_api import finish, queue, tiny  # noqa: F401 (tiny: a fixture)
from webapp import store
from webapp.protocol import Event, make_event


def test_the_runs_list_shows_a_glance_and_picks_runs_to_compare(app, client):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "glance", {"model_type": "STABLE_DIFFUSION_15"})
    store.append_metrics(conn, run_id, [(s, 1.0 / s, 1e-4, 0.0) for s in range(1, 200)])
    store.append_event(conn, run_id, make_event(Event.SAMPLE_DEFAULT, path="a.png", prompt="p", global_step=5))
    conn.commit()
    html = client.get("/runs").text
    row = html[html.index(f'data-run-id="{run_id}"'):].split("</tr>")[0]
    assert f'name="run" value="{run_id}" form="compare-form"' in row
    assert 'class="list-spark"' in row and len(row.split('points="')[1].split('"')[0].split()) >= 2
    assert "/api/samples/" in row and 'class="list-thumb"' in row
    assert 'id="compare-form"' in html and 'action="/runs/compare"' in html
    conn.close()


def test_run_again_queues_the_same_config_and_delete_is_in_a_menu(app, client, tiny):
    first = queue(client)[0]
    conn = store.connect(app.config["DATABASE"])
    finish(conn, first, steps=3)
    conn.commit()
    page = client.get(f"/runs/{first}").text
    assert 'data-action="again"' in page
    menu = page[page.index('class="menu run-menu"'):].split("</details>")[0]
    assert 'data-action="delete"' in menu and 'data-action="clone"' in menu
    answer = client.post(f"/runs/{first}/again", headers={"HX-Request": "true"})
    assert answer.status_code == 204
    again = int(answer.headers["HX-Redirect"].rsplit("/", 1)[1])
    runs = {r["id"]: r for r in client.get("/api/runs").json["runs"]}
    assert runs[again]["state"] == "queued" and runs[again]["config_name"] == runs[first]["config_name"]
    assert client.get(f"/api/runs/{again}").json["config"] == client.get(f"/api/runs/{first}").json["config"]
    missing = client.post("/runs/99999/again", headers={"HX-Request": "true"})
    assert missing.status_code == 404
