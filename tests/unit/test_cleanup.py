"""Bulk deletion (System → Clean up runs; /api/system/cleanup): ended runs picked by age, state and
config, what deleting them frees shown first (runs, files, bytes), then deleted with their folders;
queued and running runs never; a delete whose selection changed since the preview deletes nothing;
bad filters get a 400 naming the field; only an admin may; the run page shows its folder's disk use."""
from __future__ import annotations

import time

import pytest

from support.accounts import login
from webapp import store


@pytest.fixture
def runs(app):
    """Five runs: old completed (two configs), old failed, a recent completed, a running one;
    each with files in its folder."""
    conn = store.connect(app.config["DATABASE"])
    now, made = time.time(), {}
    for name, config, state, age_days in (("old_a", "sdxl-style", "completed", 40), ("old_b", "sd15-faces", "completed", 40),
                                          ("old_failed", "sdxl-style", "failed", 50), ("recent", "sdxl-style", "completed", 1),
                                          ("running", "sdxl-style", "running", 60)):
        run_id = store.create_run(conn, config, {})
        ended = None if state == "running" else now - age_days * 86400
        conn.execute("UPDATE runs SET state = ?, created_at = ?, finished_at = ? WHERE id = ?",
                     (state, now - age_days * 86400 - 60, ended, run_id))
        folder = app.config["SETTINGS"].run_dir(run_id)
        (folder / "samples").mkdir(parents=True)
        (folder / "samples" / "a.png").write_bytes(b"p" * 1000 * run_id)
        (folder / "trainer.log").write_bytes(b"l" * 10)
        store.append_metrics(conn, run_id, [(1, 0.5, 1e-3, now)])
        made[name] = run_id
    conn.close()
    return made


def preview(client, **filters):
    return client.get("/api/system/cleanup", query_string=filters)


def test_preview_then_delete_frees_what_it_said(app, client, runs):
    shown = preview(client, older_than_days=30, state="completed", config="sdxl")
    assert shown.status_code == 200, shown.json
    assert [r["id"] for r in shown.json["runs"]] == [runs["old_a"]]
    assert shown.json["total"] == {"runs": 1, "files": 2, "bytes": 1000 * runs["old_a"] + 10}
    everything_old = preview(client, older_than_days=30).json
    assert [r["id"] for r in everything_old["runs"]] == [runs["old_a"], runs["old_b"], runs["old_failed"]]
    assert runs["running"] not in [r["id"] for r in preview(client, config="sdxl").json["runs"]]  # never an active run
    done = client.post("/api/system/cleanup", json={"older_than_days": 30, "selection": everything_old["selection"]})
    assert done.status_code == 200, done.json
    assert done.json["deleted"] == [runs["old_a"], runs["old_b"], runs["old_failed"]]
    assert done.json["bytes"] == everything_old["total"]["bytes"] and done.json["files"] == 6
    for name, run_id in runs.items():
        gone = name in ("old_a", "old_b", "old_failed")
        assert (client.get(f"/api/runs/{run_id}").status_code == 404) == gone
        assert app.config["SETTINGS"].run_dir(run_id).exists() != gone
    conn = store.connect(app.config["DATABASE"])
    assert conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (runs["old_a"],)).fetchone()[0] == 0
    conn.close()


def test_a_selection_that_changed_since_the_preview_deletes_nothing(app, client, runs):
    shown = preview(client, older_than_days=30).json
    conn = store.connect(app.config["DATABASE"])
    conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time() - 90 * 86400, runs["recent"]))
    conn.close()
    stale = client.post("/api/system/cleanup", json={"older_than_days": 30, "selection": shown["selection"]})
    assert stale.status_code == 409 and stale.json["error"] == "selection changed"
    assert len(preview(client, older_than_days=30).json["runs"]) == 4  # nothing deleted


@pytest.mark.parametrize("filters, field", [({"older_than_days": "soon"}, "older_than_days"),
                                            ({"older_than_days": -1}, "older_than_days"),
                                            ({"state": "running"}, "state"), ({"config": "x" * 300}, "config")])
def test_bad_filters_are_named(client, filters, field):
    answer = preview(client, **filters)
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == field
    assert client.post("/api/system/cleanup", json={**filters, "selection": "x"}).status_code == 400


def test_no_filter_is_refused(client, runs):
    answer = preview(client)
    assert answer.status_code == 400 and answer.json["error"] == "no filter"


def test_the_page_shows_the_preview_and_deletes_by_its_form(app, client, runs):
    page = client.get("/system/cleanup?older_than_days=30&state=failed")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="cleanup-runs">1<' in html and f"#{runs['old_failed']}" in html
    selection = html.split('name="selection" value="')[1].split('"')[0]
    done = client.post("/system/cleanup", data={"older_than_days": "30.0", "state": "failed", "selection": selection},
                       headers={"HX-Request": "true"})
    assert done.status_code == 200 and 'data-testid="cleanup-done"' in done.text and "Deleted 1 run (2 files" in " ".join(done.text.split())
    assert client.get(f"/api/runs/{runs['old_failed']}").status_code == 404
    bad = client.get("/system/cleanup?older_than_days=soon")
    assert bad.status_code == 400 and 'data-testid="cleanup-error"' in bad.text
    assert 'data-testid="cleanup-link"' in client.get("/system").text


def test_only_an_admin_cleans_up(auth_app):
    client = auth_app.test_client()
    login(client, "otto")
    assert client.get("/api/system/cleanup?older_than_days=1").status_code == 403
    assert client.get("/system/cleanup").status_code == 403
    assert 'data-testid="cleanup-link"' not in client.get("/system").text
    admin = auth_app.test_client()
    token = login(admin, "ada")
    assert admin.get("/api/system/cleanup?older_than_days=1").status_code == 200
    refused = admin.post("/system/cleanup", data={"older_than_days": "1", "selection": "x"})  # no CSRF token
    assert refused.status_code == 403
    answer = admin.post("/system/cleanup", data={"older_than_days": "1", "selection": "x", "csrf_token": token})
    assert answer.status_code == 409


def test_the_run_page_shows_its_disk_use_once_measured(app, client, runs):
    run_id = runs["old_a"]
    assert "measured once the run has ended" in client.get(f"/runs/{run_id}").text
    conn = store.connect(app.config["DATABASE"])
    store.disk_use.record(conn, run_id, app.config["SETTINGS"].run_dir(run_id))
    conn.close()
    shown = client.get(f"/runs/{run_id}/files").text
    assert "in 2\n  files" in shown or "in 2 files" in " ".join(shown.split())
