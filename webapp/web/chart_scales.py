"""Axes a person can read while a chart grows: round tick values (1, 2 or 5 times a power of ten,
labelled with the digits the step needs) and domains that move only when the data crosses a round
bound, so a live chart does not rescale on every update (an LR line seemed to fall to zero when
its axis was min..max of what had arrived so far)."""
from __future__ import annotations

import math

TICKS = 4  # about this many intervals per axis


def nice_step(span: float, count: int = TICKS) -> float:
    """The round step (1, 2 or 5 x 10^k) that cuts ``span`` into about ``count`` intervals."""
    raw = span / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def nice_domain(low: float, high: float, count: int = TICKS) -> tuple[float, float, list[float]]:
    """(bottom, top, ticks): the round bounds around [low, high] and the round values between them."""
    if high <= low:  # one value: a round interval around it
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = nice_step(high - low, count)
    bottom, top = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    digits = max(0, 1 - math.floor(math.log10(step)))
    ticks = [round(bottom + i * step, digits) for i in range(round((top - bottom) / step) + 1)]
    return round(bottom, digits), round(top, digits), ticks


def tick_label(value: float) -> str:
    """A tick value as few digits as it has: 0.85, 200, 2e-4 (never 0.8322 or 1e-04)."""
    if value == 0:
        return "0"
    text = f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def step_domain(first: int, last: int, total: int | None, count: int = TICKS) -> tuple[int, int, list[int]]:
    """The x axis over global steps: 0 to the run's total steps when known (the curve grows into a
    fixed frame), else round bounds around what there is."""
    if total and total > 0 and last <= total:
        _, _, ticks = nice_domain(0, total, count)
        return 0, total, sorted({int(t) for t in ticks if t <= total})
    bottom, top, ticks = nice_domain(min(0, first), max(last, 1), count)
    return int(bottom), int(math.ceil(top)), sorted({int(t) for t in ticks})


def rate_domain(rates: list[float], configured: float | None, count: int = TICKS) -> tuple[float, float, list[float]]:
    """The learning-rate axis from 0 to a round bound over the configured rate and any rate seen
    (a warmup or a schedule stays inside it from the first point on)."""
    top = max([r for r in rates if r is not None] + [configured or 0.0])
    return nice_domain(0.0, top if top > 0 else 1.0, count)
