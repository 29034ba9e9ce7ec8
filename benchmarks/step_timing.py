"""Step timing for bench_trainer_speed.py's child runs (the built-in trainer and the plain loop
alike): the process's CPU usage at each step (getrusage), the steady-state figures between the first
and the last step (steps/s, the best 1 s window, CPU time, page faults and context switches per
step), and cProfile over the timed window summarised per step.
"""
from __future__ import annotations

from common import table

PROFILE_TOP = 25


def usage() -> tuple:
    """The process's (user s, system s, minor page faults, voluntary and involuntary switches)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_nvcsw, r.ru_nivcsw


def timing(times, cpu, wall, losses) -> dict:
    steps = len(times) - 1
    seconds = times[-1] - times[0]
    delta = [(b - a) / steps for a, b in zip(cpu[0], cpu[-1])]
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "best_1s_steps_per_s": best_window(times, 1.0),
            "cpu_s_per_step": delta[0] + delta[1], "user_s_per_step": delta[0], "sys_s_per_step": delta[1],
            "minor_faults_per_step": delta[2], "voluntary_switches_per_step": delta[3],
            "involuntary_switches_per_step": delta[4], "t0": wall[0], "t1": wall[-1],
            "first_loss": losses[0], "last_loss": losses[-1]}


def best_window(times: list[float], span: float) -> float | None:
    """The highest steps/s over any stretch of at least ``span`` seconds between two steps: the
    least disturbed second of a run (a shared host's load comes and goes)."""
    best, j = None, 0
    for i in range(len(times)):
        j = max(j, i + 1)
        while j < len(times) and times[j] - times[i] < span:
            j += 1
        if j == len(times):
            break
        rate = (j - i) / (times[j] - times[i])
        best = rate if best is None else max(best, rate)
    return best


def make_profiler():
    import cProfile
    return cProfile.Profile()


def profile_summary(profiler, steps: int) -> dict:
    """Own time (tottime) and cumulative time per step of the top functions (ms per step)."""
    import pstats
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append({"function": f"{where}:{line}({function})", "calls_per_step": calls / max(1, steps),
                     "own_ms_per_step": 1000 * tottime / max(1, steps),
                     "cum_ms_per_step": 1000 * cumtime / max(1, steps)})
    total = sum(r["own_ms_per_step"] for r in rows)
    by_own = sorted(rows, key=lambda r: -r["own_ms_per_step"])[:PROFILE_TOP]
    by_cum = sorted(rows, key=lambda r: -r["cum_ms_per_step"])[:PROFILE_TOP * 2]
    return {"total_ms_per_step": total, "by_own": by_own, "by_cum": by_cum}


def print_profile(label: str, profile: dict) -> None:
    print(f"\n{label}: cProfile over the timed window, {profile['total_ms_per_step']:.2f} ms of Python-visible "
          f"time per step (profiling inflates small calls)")
    print(table(["function", "calls/step", "own ms/step", "cum ms/step"],
                [[r["function"], f"{r['calls_per_step']:.1f}", f"{r['own_ms_per_step']:.3f}",
                  f"{r['cum_ms_per_step']:.3f}"] for r in profile["by_own"][:15]]))
