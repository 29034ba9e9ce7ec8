"""Know without looking: a training you started that ended shows a banner on every page until you
dismiss it (per browser, by a cookie); not on the run's own page, not for another person's run."""
from __future__ import annotations

import time

from webapp import store


def end(conn, name: str, state: str, who: str | None = None) -> int:
    run_id = store.create_run(conn, name, {"model_type": "STABLE_DIFFUSION_15"})
    if who:
        store.set_started_by(conn, run_id, who)
    conn.execute("UPDATE runs SET state = ?, finished_at = ? WHERE id = ?", (state, time.time(), run_id))
    conn.commit()
    return run_id


def test_an_ended_run_is_told_on_every_page_until_dismissed(app, client):
    conn = store.connect(app.config["DATABASE"])
    failed = end(conn, "night-run", "failed")
    end(conn, "someone-elses", "completed", who="ada")  # not "local": not this person's
    for path in ("/", "/runs", "/configs/", "/samples"):
        page = client.get(path).text
        assert 'data-testid="run-banner"' in page and f"#{failed} night-run</a> failed" in page, path
    assert 'data-testid="run-banner"' not in client.get(f"/runs/{failed}").text  # looking at it already
    answer = client.post(f"/runs/{failed}/seen", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "otweb_seen_run=" in answer.headers["Set-Cookie"]
    assert 'data-testid="run-banner"' not in client.get("/").text
    done = end(conn, "next-run", "completed")  # a later ending is news again
    assert f"#{done} next-run</a> finished" in client.get("/runs").text
    conn.close()
