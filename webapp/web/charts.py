"""Small server-rendered SVG charts: no JS, no build."""
from __future__ import annotations

from dataclasses import dataclass, replace

from webapp.store import loss_buckets
from webapp.web.chart_scales import nice_domain, rate_domain, step_domain, tick_label

WIDTH, HEIGHT = 300, 60


def loss_sparkline(values: list[float], width: int = WIDTH, height: int = HEIGHT) -> str | None:
    """The points attribute of an SVG polyline, or None with fewer than two values."""
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values))


def percent_sparkline(values: list, width: int = 120, height: int = 30) -> str | None:
    """Points for a 0–100 % polyline (fixed scale: a flat line reads as its level)."""
    values = [min(100.0, max(0.0, v or 0.0)) for v in values]
    if len(values) < 2:
        return None
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - v / 100 * height:.1f}" for i, v in enumerate(values))


# -- the run page's loss chart: loss, smoothed loss and learning rate over global steps --------

CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 800, 260, 56, 56, 12, 38  # room for the axis titles


@dataclass(frozen=True)
class Layout:
    """A chart's frame in viewBox units. The SVG scales to its card: an 800-unit chart on a 346 px
    phone card shrinks 10-unit labels to 4 px, so a phone gets its own narrow drawing (app.css picks
    one by the width), with fewer ticks and labels of 12 CSS px on a 390 px phone (about 11 at 360 px)."""
    name: str = "wide"
    width: int = CHART_W
    height: int = CHART_H
    left: int = PAD_L
    right: int = PAD_R
    top: int = PAD_T
    bottom: int = PAD_B
    ticks: int = 4


WIDE = Layout()
NARROW = Layout("narrow", 360, 280, 64, 64, 12, 40, ticks=2)  # labels 12.5 units: 12 px on a 390 px phone
NARROW_OVERLAY = replace(NARROW, right=26)  # the compare chart: no learning-rate axis, room for the last step
NARROW_POINTS = 200  # a phone's chart is a third as wide: as many points as it can show


def smoothed(points: list[dict], factor: float = 0.9) -> list[float | None]:
    """The bridge's exponential smoothing, per point; a bucket of n steps counts as n steps."""
    out, value = [], None
    for p in points:
        if p["loss"] is not None:
            weight = factor ** max(1.0, p.get("n") or 1)
            value = p["loss"] if value is None else weight * value + (1 - weight) * p["loss"]
        out.append(value)
    return out


def loss_series(conn, run_id: int, max_points: int) -> dict:
    """At most max_points points (SQL min/max buckets), each with the smoothed loss."""
    points, total = loss_buckets(conn, run_id, max(1, max_points // 2))
    for p, smooth in zip(points, smoothed(points)):
        p["smooth"] = smooth
    return {"points": points[:max_points], "total": total}


def _scale(low: float, high: float, top: float, bottom: float):
    span = (high - low) or 1.0
    return lambda v: bottom - (v - low) / span * (bottom - top)


def chart_geometry(points: list[dict], markers: list[dict], total_steps: int | None = None,
                   lr_configured: float | None = None, layout: Layout = WIDE) -> dict | None:
    """Polylines and ticks for templates/runs/_chart.html, or None with no points. The axes are
    fixed where the config fixes them (steps 0..total, LR 0..its configured rate) and round
    elsewhere (chart_scales), so a live update extends the lines instead of rescaling them."""
    losses = [p["loss"] for p in points if p["loss"] is not None]
    if not losses:
        return None
    first, last = points[0]["step"], points[-1]["step"]
    x_low, x_high, x_ticks = step_domain(first, last, total_steps, layout.ticks)
    span = layout.width - layout.left - layout.right
    x_at = lambda s: layout.left + (s - x_low) / ((x_high - x_low) or 1) * span  # noqa: E731
    top, bottom = layout.top, layout.height - layout.bottom
    low, high, loss_ticks = nice_domain(min(losses), max(losses), layout.ticks)
    y = _scale(low, high, top, bottom)
    lrs = [p["lr"] for p in points if p["lr"] is not None]
    lr_low, lr_high, lr_ticks = rate_domain(lrs, lr_configured, layout.ticks)
    y_lr = _scale(lr_low, lr_high, top, bottom) if lrs else None

    def line(key, scale):
        return " ".join(f"{x_at(p['step']):.1f},{scale(p[key]):.1f}" for p in points if p.get(key) is not None)
    return {
        "layout": layout.name, "width": layout.width, "height": layout.height, "left": layout.left,
        "right": layout.width - layout.right, "top": top, "bottom": bottom,
        "loss": line("loss", y), "smooth": line("smooth", y), "lr": line("lr", y_lr) if y_lr else "",
        "y_ticks": [{"y": round(y(v), 1), "label": tick_label(v)} for v in loss_ticks],
        "lr_ticks": [{"y": round(y_lr(v), 1), "label": tick_label(v)} for v in lr_ticks] if lrs else [],
        "x_ticks": [{"x": round(x_at(s), 1), "label": str(int(s))} for s in x_ticks],
        "markers": [{**m, "x": round(x_at(m["step"]), 1)} for m in markers
                    if m.get("step") is not None and x_low <= m["step"] <= x_high],
        "dot": _only_point(points, x_at, y),
        "count": len(points), "first": first, "last": last,
    }


def _only_point(points: list[dict], x_at, y) -> dict | None:
    """A chart of one point draws it as a dot (a one-point polyline draws nothing)."""
    if len(points) != 1 or points[0]["loss"] is None:
        return None
    return {"x": round(x_at(points[0]["step"]), 1), "y": round(y(points[0]["loss"]), 1)}


# -- the compare page's chart: several runs' smoothed loss on one set of axes ------------------

def overlay_geometry(curves: list[dict], layout: Layout = WIDE) -> dict | None:
    """curves: [{"label", "points"}] (points from loss_series). Aligned by global step: one x axis
    from the earliest to the latest step any run reached, so a shorter run ends early on it.
    Smoothed loss only: raw per-step loss of five runs on one chart is noise over noise."""
    drawn = [c for c in curves if any(p.get("smooth") is not None for p in c["points"])]
    if not drawn:
        return None
    values = [p["smooth"] for c in drawn for p in c["points"] if p.get("smooth") is not None]
    steps = [p["step"] for c in drawn for p in c["points"]]
    first, last = min(steps), max(steps)
    span = layout.width - layout.left - layout.right
    x_at = lambda s: layout.left + (s - first) / ((last - first) or 1) * span  # noqa: E731
    top, bottom = layout.top, layout.height - layout.bottom
    low, high, y_ticks = nice_domain(min(values), max(values), layout.ticks)
    y = _scale(low, high, top, bottom)
    lines = [{"label": c["label"], "index": index,
              "points": " ".join(f"{x_at(p['step']):.1f},{y(p['smooth']):.1f}"
                                 for p in c["points"] if p.get("smooth") is not None)}
             for index, c in enumerate(curves) if c in drawn]
    return {
        "layout": layout.name, "width": layout.width, "height": layout.height, "left": layout.left,
        "right": layout.width - layout.right, "top": top, "bottom": bottom,
        "lines": lines, "first": first, "last": last,
        "y_ticks": [{"y": round(y(v), 1), "label": tick_label(v)} for v in y_ticks],
        "x_ticks": [{"x": round(x_at(s), 1), "label": str(int(s))}
                    for s in step_domain(first, last, None, layout.ticks)[2] if first <= s <= last],
    }
