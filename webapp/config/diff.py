"""Configs side by side: flattened to dotted keys, only the keys whose values differ. Shared by the
model versions' and the runs' compare pages."""
from __future__ import annotations

MISSING = object()  # a key one config lacks differs from any value the others have


def flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out if value else {prefix: []}
    return {prefix: value}


def differing(configs: list[dict]) -> list[dict]:
    """[{"key", "values": one per config (None where a config lacks the key)}], sorted by key."""
    flat = [flatten(config or {}) for config in configs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append({"key": key, "values": [None if v is MISSING else v for v in values]})
    return rows
