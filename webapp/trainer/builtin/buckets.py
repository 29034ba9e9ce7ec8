"""Aspect-ratio buckets: sizes of (about) equal pixel area per resolution, and which one an image
belongs to.

A bucket is a (width, height) in pixels, both multiples of ``quantum`` (64 px for SD-sized
resolutions, 16 px for the tiny demo sizes), with width * height close to resolution².
An image goes to the bucket whose aspect ratio is nearest its own on a log scale (so 2:1 and 1:2
are equally far from 1:1). Without bucketing every image goes to the square bucket.
"""
from __future__ import annotations

import math

# width / height of the landscape buckets; their portrait twins are added by bucket_sizes
ASPECTS = (1.0, 1.25, 4 / 3, 1.5, 16 / 9, 2.0, 2.5)


def quantum_for(resolution: int) -> int:
    return 64 if resolution >= 256 else 16 if resolution >= 32 else 8


def bucket_sizes(resolution: int, quantum: int | None = None) -> list[tuple[int, int]]:
    """Every bucket of ``resolution`` (landscape, square and portrait), without duplicates."""
    quantum = quantum or quantum_for(resolution)
    area, sizes = resolution * resolution, []
    for aspect in ASPECTS:
        width = max(quantum, round(resolution * math.sqrt(aspect) / quantum) * quantum)
        height = max(quantum, round(area / width / quantum) * quantum)
        for size in ((width, height), (height, width)):
            if size not in sizes:
                sizes.append(size)
    return sorted(sizes, key=lambda s: s[0] / s[1])


def assign(width: int, height: int, resolution: int, bucketing: bool = True) -> tuple[int, int]:
    """The bucket of an image of ``width`` x ``height`` at ``resolution``."""
    if not bucketing:
        return (resolution, resolution)
    ratio = math.log(width / height)
    return min(bucket_sizes(resolution), key=lambda s: (abs(math.log(s[0] / s[1]) - ratio), s))
