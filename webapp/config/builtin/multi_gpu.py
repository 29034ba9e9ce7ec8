"""OneTrainer's multi-GPU fields, read for the built-in trainer (torch-free).

``multi_gpu`` turns data parallelism on; ``device_indexes`` ("0,1") names one device per rank
(CUDA indexes; with ``train_device: cpu`` only their number counts: that many CPU ranks over
gloo). ``gradient_reduce_precision``, ``fused_gradient_reduce`` and ``async_gradient_reduce``
say how the gradients are averaged over the ranks.
"""
from __future__ import annotations

from dataclasses import dataclass

REDUCE_PRECISIONS = ("WEIGHT_DTYPE", "FLOAT_32", "WEIGHT_DTYPE_STOCHASTIC", "FLOAT_32_STOCHASTIC")
MAX_RANKS = 64


@dataclass(frozen=True)
class MultiGpu:
    enabled: bool = False
    device_indexes: tuple[int, ...] = ()
    reduce_precision: str = "FLOAT_32_STOCHASTIC"
    fused: bool = True
    async_reduce: bool = True

    @property
    def world_size(self) -> int:
        return len(self.device_indexes) if self.enabled else 1


def parse_indexes(value) -> tuple[int, ...]:
    """"0,1" → (0, 1); ValueError with the reason otherwise."""
    if not isinstance(value, str):
        raise ValueError("must be a string such as \"0,1\"")
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{value!r}: list device numbers separated by commas, e.g. \"0,1\"")
    indexes = tuple(int(part) for part in parts)
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"{value!r} names a device twice")
    if len(indexes) > MAX_RANKS:
        raise ValueError(f"at most {MAX_RANKS} devices")
    return indexes


def read_multi_gpu(reader) -> MultiGpu:
    """From a settings ``_Reader``: errors are recorded on it, naming the field."""
    enabled = reader.flag("multi_gpu", False)
    indexes: tuple[int, ...] = ()
    if enabled:
        try:
            indexes = parse_indexes(reader.config.get("device_indexes", ""))
        except ValueError as exc:
            reader.fail("device_indexes", str(exc))
        else:
            if not indexes:
                reader.fail("device_indexes", "multi_gpu needs the devices to train on, e.g. \"0,1\"")
    return MultiGpu(enabled=enabled, device_indexes=indexes,
                    reduce_precision=reader.choice("gradient_reduce_precision", "FLOAT_32_STOCHASTIC",
                                                   REDUCE_PRECISIONS),
                    fused=reader.flag("fused_gradient_reduce", True),
                    async_reduce=reader.flag("async_gradient_reduce", True))


def requested_gpus(config: dict) -> int:
    """How many devices (ranks) a run asks for; lenient, for the queue: 1 unless multi_gpu names
    several valid indexes (a bad value is the validation's business, not the queue's)."""
    if not isinstance(config, dict) or config.get("multi_gpu") is not True:
        return 1
    try:
        return max(1, len(parse_indexes(config.get("device_indexes", ""))))
    except ValueError:
        return 1
