"""A nested training state (optimizer, LR scheduler, scaler, EMA and RNG states) as two files that
load without running code: its tensors in ``<stem>.safetensors``, everything else in ``<stem>.json``
with each tensor replaced by a reference to its key.

A backup may cross hosts (a resume on another worker), and unpickling what another host wrote
lets that host run code here: nothing here unpickles. The JSON keeps what a state dict needs for
an exact resume: tuples, dicts with int keys (an optimizer's per-parameter state), floats exactly
(``repr`` round-trips; inf and nan too). Anything else is refused when the backup is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TENSOR, TUPLE, PAIRS = "$tensor", "$tuple", "$pairs"  # markers: no key of a plain dict starts with "$"


class UnsafeStateError(ValueError):
    """A state that cannot be written or read in the safe format."""


def save_state(state, folder: Path, stem: str) -> list[Path]:
    """Writes ``<stem>.safetensors`` and ``<stem>.json`` into folder; returns both paths."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "state")
    folder = Path(folder)
    weights, index = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    save_file(tensors, str(weights))
    index.write_text(json.dumps({"format": 1, "state": tree}), encoding="utf-8")
    return [weights, index]


def load_state(folder: Path, stem: str):
    folder = Path(folder)
    try:
        index = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / f"{stem}.safetensors"))
        return _decode(index["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnsafeStateError(f"{folder.name}/{stem} cannot be read: {exc}") from exc


def _encode(value, tensors: dict, where: str):
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        # a view of a larger tensor would save all of it; safetensors refuses shared storage
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {TENSOR: key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {TUPLE: [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {PAIRS: [[_encode(k, tensors, where), _encode(v, tensors, f"{where}[{k!r}]")]
                        for k, v in value.items()]}
    raise UnsafeStateError(f"{where} is a {type(value).__name__}: a backup holds only tensors, numbers, "
                           "strings, lists, tuples and dicts")


def _decode(value, tensors: dict):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if TENSOR in value:
        return tensors[value[TENSOR]]
    if TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[TUPLE])
    if PAIRS in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[PAIRS]}
    return {k: _decode(v, tensors) for k, v in value.items()}

