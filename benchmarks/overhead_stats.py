"""bench_training_overhead.py's figures from its runs: per pair the ratio of the trainer's CPU seconds
per step B/A (the primary figure: CPU time is what a shared machine disturbs least) and the steps/s
ratio B/A (secondary: wall-clock moves with every other user of the cores), then the median over the
pairs with its spread (min-max, IQR) and a bootstrap 95 % confidence interval of the median, over
the undisturbed pairs (foreign load below the limit in both runs) and over all of them. A ratio is
said to be "within X %" of 1 only when its whole interval is."""
from __future__ import annotations

import random
import statistics

from common import table

FOREIGN_LIMIT = 0.05  # a run in which processes outside the benchmark took >= 5% of the machine: disturbed
RESAMPLES = 4000      # bootstrap resamples of the pairs
BANDS = (0.01, 0.02, 0.05, 0.10)  # the "within X %" a verdict may state, narrowest first


def spread(values: list[float]) -> dict | None:
    """Median, min, max and the quartiles (inclusive: with 2 values, q1 and q3 lie between them)."""
    if not values:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
            "q1": q1, "q3": q3, "ci95": bootstrap_ci(values)}


def bootstrap_ci(values: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the median: the pairs resampled with replacement."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(RESAMPLES))
    tail = (1 - level) / 2
    return medians[int(tail * RESAMPLES)], medians[min(RESAMPLES - 1, int((1 - tail) * RESAMPLES))]


def within(ci: tuple[float, float] | None) -> float | None:
    """The narrowest band of BANDS around 1 that holds the whole interval (None: none does)."""
    if ci is None:
        return None
    return next((band for band in BANDS if 1 - band <= ci[0] and ci[1] <= 1 + band), None)


def is_clean(run: dict) -> bool:
    return run["foreign_cpu_share"] is not None and run["foreign_cpu_share"] < FOREIGN_LIMIT


def pair_figures(a: dict, b: dict) -> dict:
    cpu_a, cpu_b = a["trainer_cpu_s_per_step"], b["trainer_cpu_s_per_step"]
    return {"steps_per_s_ratio": b["steps_per_s"] / a["steps_per_s"],
            "trainer_cpu_per_step_ratio": cpu_b / cpu_a if cpu_a and cpu_b else None,
            "clean": is_clean(a) and is_clean(b)}


def pairs_of(runs: list[dict]) -> list[tuple[dict, dict]]:
    """(A, B) of each pair, whichever ran first (the runs go A B, B A, A B, ...)."""
    return [(x, y) if x["kind"] == "A" else (y, x) for x, y in zip(runs[::2], runs[1::2])]


def summarise(runs: list[dict]) -> dict:
    pairs = [pair_figures(a, b) for a, b in pairs_of(runs)]
    clean = [p for p in pairs if p["clean"]]

    def over(chosen: list[dict]) -> dict:
        return {"steps_per_s_ratio": spread([p["steps_per_s_ratio"] for p in chosen]),
                "trainer_cpu_per_step_ratio": spread([p["trainer_cpu_per_step_ratio"] for p in chosen
                                                      if p["trainer_cpu_per_step_ratio"] is not None])}
    arms = {kind: {"steps_per_s": spread([r["steps_per_s"] for r in runs if r["kind"] == kind]),
                   "trainer_cpu_s_per_step": spread([r["trainer_cpu_s_per_step"] for r in runs
                                                     if r["kind"] == kind and r["trainer_cpu_s_per_step"]]),
                   "ui_cpu_s_per_step": spread([r["ui_cpu_s_per_step"] for r in runs
                                                if r["kind"] == kind and r.get("ui_cpu_s_per_step") is not None]),
                   "torch_threads": sorted({r["trainer"].get("torch_threads") for r in runs if r["kind"] == kind},
                                           key=str)}
            for kind in ("A", "B")}
    used = over(clean or pairs)
    ratio, cpu = used["steps_per_s_ratio"]["median"], (used["trainer_cpu_per_step_ratio"] or {}).get("median")
    cpu_ci = (used["trainer_cpu_per_step_ratio"] or {}).get("ci95")
    return {"cpu_ratio_ci95": cpu_ci, "cpu_within": within(cpu_ci),
            "steps_ratio_ci95": used["steps_per_s_ratio"]["ci95"],
            "steps_within": within(used["steps_per_s_ratio"]["ci95"]),"pairs": pairs, "clean_pairs": len(clean), "over_clean_pairs": over(clean) if clean else None,
            "over_all_pairs": over(pairs), "arms": arms, "median_ratio": ratio, "median_cpu_ratio": cpu,
            "same_threads": arms["A"]["torch_threads"] == arms["B"]["torch_threads"]
            and len(arms["A"]["torch_threads"]) == 1,
            "goal": "median steps/s ratio B/A >= 0.99 and the trainer's CPU per step B/A within 1% "
                    "(its 95% interval inside 0.99-1.01)",
            "met": bool(clean) and ratio >= 0.99 and within(cpu_ci) == 0.01,
            "conclusive": bool(clean)}


def fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def describe(s: dict | None, pattern: str = "{:.3f}") -> str:
    if not s:
        return "-"
    ci = s.get("ci95")
    interval = f"95% CI {pattern.format(ci[0])}–{pattern.format(ci[1])}, " if ci else ""
    return (f"**{pattern.format(s['median'])}** ({interval}IQR {pattern.format(s['q1'])}–{pattern.format(s['q3'])}, "
            f"min–max {pattern.format(s['min'])}–{pattern.format(s['max'])}, {s['n']} pairs)")


def within_words(band: float | None) -> str:
    return f"within {100 * band:.0f} % of 1" if band else "not shown within 10 % of 1 (the interval is wider)"


def runs_table(runs: list[dict], clients: int) -> str:
    rows = [[f"{i + 1}", "A: trainer, no callbacks" if r["kind"] == "A" else f"B: full stack, {clients} SSE clients",
             f"{r['first_step']}→{r['last_step']}", f"{r['seconds']:.1f}", f"{r['steps_per_s']:.2f}",
             fmt(r["trainer_cpu_s_per_step"] and 1000 * r["trainer_cpu_s_per_step"], "{:.2f}"),
             fmt(r["trainer"].get("torch_threads"), "{}"), fmt(r["trainer"].get("os_threads"), "{}"),
             fmt(r["stack_cpu_share"] and 100 * r["stack_cpu_share"], "{:.2f}"),
             fmt(r["foreign_cpu_share"] and 100 * r["foreign_cpu_share"], "{:.1f}") + ("" if is_clean(r) else " ✗"),
             f"{r['loadavg'][0]:.2f}"]
            for i, r in enumerate(runs)]
    return table(["#", "run", "steps", "s", "steps/s", "trainer CPU ms/step", "torch threads", "OS threads",
                  "product's other processes, % of machine", "foreign load, % of machine", "load avg (1 min)"], rows)


def verdict_lines(summary: dict) -> list[str]:
    used = summary["over_clean_pairs"] or summary["over_all_pairs"]
    which = (f"{summary['clean_pairs']} of {len(summary['pairs'])} pairs undisturbed (foreign load < "
             f"{100 * FOREIGN_LIMIT:.0f}% in both runs)" if summary["conclusive"] else
             f"NO undisturbed pair (✗: foreign load >= {100 * FOREIGN_LIMIT:.0f}%): inconclusive")
    lines = [f"trainer CPU per step B/A, median over the pairs: "
             f"{describe(used['trainer_cpu_per_step_ratio'], '{:.4f}')}: {within_words(summary['cpu_within'])}; "
             f"goal within 1%; {which}",
             f"steps/s ratio B/A (wall clock, secondary), median: {describe(used['steps_per_s_ratio'])}: "
             f"{within_words(summary['steps_within'])}; goal >= 0.99",
             "per pair: " + ", ".join(f"{p['steps_per_s_ratio']:.3f}" + ("" if p["clean"] else "✗")
                                      for p in summary["pairs"])]
    if summary["conclusive"] and summary["clean_pairs"] < len(summary["pairs"]):
        lines.append(f"over all {len(summary['pairs'])} pairs: "
                     f"{describe(summary['over_all_pairs']['steps_per_s_ratio'])}")
    arms = summary["arms"]
    ui = arms["B"]["ui_cpu_s_per_step"]
    if ui:
        lines.append(f"the UI's own CPU (worker, web, Redis, SSE clients) per trainer step in B: "
                     f"{1000 * ui['median']:.3f} ms (median; IQR {1000 * ui['q1']:.3f}–{1000 * ui['q3']:.3f})")
    lines.append(f"torch threads: A {arms['A']['torch_threads']}, B {arms['B']['torch_threads']}"
                 + ("" if summary["same_threads"] else "  ← THE ARMS DIFFER: the ratio compares unlike trainers"))
    lines.append("goal met" if summary["met"] else "goal NOT met" if summary["conclusive"] else
                 "goal: inconclusive (no undisturbed pair)")
    return lines


def readme_line(summary: dict, runs: list[dict], when: str) -> str:
    """The figures as the README's table states them (pasted where it says TODO-FIGURE)."""
    used = summary["over_clean_pairs"] or summary["over_all_pairs"]
    ratio, cpu = used["steps_per_s_ratio"], used["trainer_cpu_per_step_ratio"] or {}
    loads = [r["loadavg"][0] for r in runs]
    foreign = [100 * r["foreign_cpu_share"] for r in runs if r["foreign_cpu_share"] is not None]
    stack = [100 * r["stack_cpu_share"] for r in runs if r["kind"] == "B" and r["stack_cpu_share"] is not None]
    ms = {k: 1000 * summary["arms"][k]["trainer_cpu_s_per_step"]["median"] for k in ("A", "B")
          if summary["arms"][k]["trainer_cpu_s_per_step"]}
    ui = summary["arms"]["B"]["ui_cpu_s_per_step"]
    return (f"{when} (load average {min(loads):.2f}–{max(loads):.2f}, foreign load "
            f"{min(foreign, default=0):.1f}–{max(foreign, default=0):.1f} %; {len(summary['pairs'])} ABBA pairs, "
            f"{summary['clean_pairs']} undisturbed): the trainer's CPU per step B/A "
            f"{describe(cpu or None, '{:.4f}')}, {within_words(summary['cpu_within'])} "
            f"(A {fmt(ms.get('A'), '{:.2f}')} ms, B {fmt(ms.get('B'), '{:.2f}')} ms a step); the UI's own CPU "
            f"{fmt(ui and 1000 * ui['median'], '{:.3f}')} ms per trainer step; steps/s B/A {describe(ratio)}; "
            f"torch threads A {summary['arms']['A']['torch_threads']}, B {summary['arms']['B']['torch_threads']}; "
            f"the product's other processes used {statistics.mean(stack) if stack else 0:.2f} % of the machine "
            "while B trained")
