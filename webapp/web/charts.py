"""Small server-rendered SVG charts: no JS, no build."""
from __future__ import annotations

WIDTH, HEIGHT = 300, 60


def loss_sparkline(values: list[float], width: int = WIDTH, height: int = HEIGHT) -> str | None:
    """The points attribute of an SVG polyline, or None with fewer than two values."""
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values))
