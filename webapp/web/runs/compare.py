"""Two to five runs side by side: their smoothed loss curves on one chart (aligned by step), the
config keys that differ, and their samples of the same prompt at the same step."""
from __future__ import annotations

from webapp import store
from webapp.web.charts import NARROW_OVERLAY, loss_series, overlay_geometry
from webapp.config.diff import differing
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db
from webapp.web.runs.charts import CHART_POINTS
from webapp.web.runs.views import config_as_run, get_run_view

MIN_RUNS, MAX_RUNS = 2, 5
PROMPTS_SHOWN = 12
SAMPLES_READ = 2000  # per run: a long run samples a few hundred times


def parse_ids(values: list[str]) -> list[int]:
    ids = list(dict.fromkeys(int(v) for v in values if v.strip().isdigit()))  # in the order picked, once each
    if not MIN_RUNS <= len(ids) <= MAX_RUNS or len(ids) != len(values):
        raise ApiError(400, "pick 2 to 5 runs",
                       f"tick {MIN_RUNS} to {MAX_RUNS} runs in the runs list, then press Compare")
    return ids


def compare(ids: list[int], step: int | None = None) -> dict:
    conn = get_db()
    runs = [get_run_view(run_id) for run_id in ids]  # 404 for a run that does not exist
    curves = [{"label": f"#{run['id']} {run['config_name'] or ''}".strip(),
               "points": loss_series(conn, run["id"], CHART_POINTS)["points"]} for run in runs]
    configs = [config_as_run(store.get_run(conn, run_id)) for run_id in ids]
    rows, steps = matched_samples(conn, ids, step)
    chart = overlay_geometry(curves)
    return {"runs": runs, "chart": chart, "narrow": overlay_geometry(curves, NARROW_OVERLAY),
            "config_diff": differing(configs), "overlaps": overlapping(chart),
            "sample_rows": rows, "sample_steps": steps, "step": step}


def overlapping(chart: dict | None) -> list[list[str]]:
    """The runs whose drawn curves are the same line (an identical config and seed trains the
    same curve): the later one hides the earlier, so the page says so. Labels, grouped."""
    groups: dict[str, list[str]] = {}
    for line in (chart or {}).get("lines", []):
        groups.setdefault(line["points"], []).append(line["label"])
    return [labels for labels in groups.values() if len(labels) > 1]


def matched_samples(conn, ids: list[int], step: int | None) -> tuple[list[dict], list[int]]:
    """Rows of one prompt each: per run the sample at the chosen step (else the newest step every
    run with the prompt has, else that run's newest of the prompt); the steps offered to choose."""
    by_prompt: dict[str, dict[int, dict[int, dict]]] = {}
    for run_id in ids:
        for sample in store.list_samples(conn, run_id, limit=SAMPLES_READ):
            if sample["global_step"] is None:
                continue
            runs = by_prompt.setdefault(sample["prompt"], {})
            runs.setdefault(run_id, {}).setdefault(sample["global_step"], sample)  # newest kept
    rows, offered = [], set()
    shared = [(prompt, runs) for prompt, runs in by_prompt.items() if len(runs) >= 2]
    for prompt, runs in shared[:PROMPTS_SHOWN]:
        common = set.intersection(*(set(steps) for steps in runs.values()))
        offered |= common
        at = step if step in common else max(common, default=None)
        cells = []
        for run_id in ids:
            steps = runs.get(run_id, {})
            chosen = at if at in steps else (max(steps) if steps else None)
            cells.append(steps.get(chosen) if chosen is not None else None)
        rows.append({"prompt": prompt, "step": at, "cells": cells})
    return rows, sorted(offered)
