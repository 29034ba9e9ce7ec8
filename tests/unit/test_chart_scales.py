"""The run chart's axes (issue 31, point 8): round ticks of few digits, domains that hold still as
a run's points arrive (steps 0..total, LR 0..the configured rate), a one-point chart drawn as a dot."""
from __future__ import annotations

from hypothesis import given, strategies as st

from webapp.web.chart_scales import nice_domain, rate_domain, step_domain, tick_label
from webapp.web.charts import chart_geometry


def significant(label: str) -> int:
    return len(label.split("e")[0].replace("-", "").replace(".", "").strip("0"))


@given(st.floats(1e-6, 1e3), st.floats(0.0, 1e3))
def test_ticks_are_round_and_cover_the_values(low, extra):
    high = low + extra
    bottom, top, ticks = nice_domain(low, high)
    slack = 1e-9 * max(1.0, high)  # a value a hair past a round bound is on it
    assert bottom <= low + slack and top >= high - slack and ticks[0] == bottom and ticks[-1] == top
    assert 2 <= len(ticks) <= 12
    assert all(significant(tick_label(t)) <= 3 for t in ticks), ticks


def test_labels_are_short():
    assert [tick_label(v) for v in (0.0, 0.85, 200.0, 2e-4, 5e-05)] == ["0", "0.85", "200", "0.0002", "5e-5"]
    assert nice_domain(0.8322, 0.9012)[2] == [0.82, 0.84, 0.86, 0.88, 0.9, 0.92]


def test_the_step_and_rate_axes_do_not_move_as_points_arrive():
    assert step_domain(1, 3, 480) == step_domain(1, 470, 480) == (0, 480, [0, 200, 400])
    assert rate_domain([1e-5], 1e-4) == rate_domain([1e-5, 9e-5], 1e-4)  # a warmup stays inside


def points(*pairs):
    return [{"step": s, "loss": v, "smooth": v, "lr": 1e-4, "n": 1} for s, v in pairs]


def test_one_point_is_a_dot_and_more_are_a_line():
    one = chart_geometry(points((1, 0.5)), [], total_steps=12, lr_configured=1e-4)
    assert one["dot"] and one["count"] == 1
    two = chart_geometry(points((1, 0.5), (2, 0.4)), [], total_steps=12, lr_configured=1e-4)
    assert two["dot"] is None and len(two["loss"].split()) == 2
    assert [t["label"] for t in one["x_ticks"]] == [t["label"] for t in two["x_ticks"]]
