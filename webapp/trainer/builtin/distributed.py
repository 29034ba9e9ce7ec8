"""Data parallelism over ranks with torch.distributed (gloo on the CPU, NCCL on CUDA).

Every rank holds the whole model and the same trained parameters. An epoch's batches are cut at
the global batch size (``batch_size`` × ranks, single-bucket as always) and each rank trains its
slice of every global batch (``shard``), so the buckets and the concept balancing are the
1-rank run's. The noise of a step is drawn for the whole global batch from one generator that
every rank seeds alike, each rank keeping its rows: a 2-rank run at batch b draws exactly what
a 1-rank run at batch 2b draws. Before each optimizer step the gradients are averaged over the
ranks (``GradientReducer``), so every rank takes the same step and stays identical.

Decisions (stop, sample, backup, save) are taken by rank 0 and broadcast at a step boundary
(``agree``): every rank leaves the loop at the same step and no collective waits for a rank that
has gone. ``Solo`` is the 1-rank stand-in with the same methods, so the backend has one path.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch

# a rank waits in a collective while rank 0 samples or writes a backup; a dead rank is noticed by
# the worker (which ends the run in seconds), not by this timeout
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=6)
BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket size


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks meet: set by the worker for each rank process."""
    rank: int
    world_size: int
    init_method: str  # tcp://127.0.0.1:<port>


class Solo:
    rank, world_size, is_main = 0, 1, True

    def shard(self, batch: list[int]) -> tuple[list[int], int, int]:
        return batch, 0, len(batch)

    def agree(self, value):
        return value

    def average(self, value: float) -> float:
        return value

    def gather(self, value) -> list:
        return [value]

    def barrier(self) -> None:
        pass

    def reducer(self, params, multi_gpu, seed: int):
        return None

    def same_values(self, params) -> None:
        pass

    def close(self) -> None:
        pass


class Group(Solo):
    """This process's place in a process group (init_process_group on construction)."""

    def __init__(self, rendezvous: Rendezvous, device: torch.device):
        import torch.distributed as dist
        self.dist = dist
        self.rank, self.world_size = rendezvous.rank, rendezvous.world_size
        self.is_main = self.rank == 0
        self.device = device
        backend = "nccl" if device.type == "cuda" else "gloo"
        options = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, init_method=rendezvous.init_method, rank=self.rank,
                                world_size=self.world_size, timeout=COLLECTIVE_TIMEOUT, **options)
        self.reduce_seconds, self.reduces = 0.0, 0  # time averaging gradients (logged at the end)

    def shard(self, batch: list[int]) -> tuple[list[int], int, int]:
        """This rank's slice of a global batch: (indices, first row, rows in all). A batch
        smaller than the group (a leftover) is padded by repeating it, so no rank is idle."""
        rows = list(batch)
        while len(rows) < self.world_size:
            rows += batch[:self.world_size - len(rows)]
        per, extra = divmod(len(rows), self.world_size)
        start = self.rank * per + min(self.rank, extra)
        size = per + (1 if self.rank < extra else 0)
        return rows[start:start + size], start, len(rows)

    def agree(self, value):
        """Rank 0's value, on every rank."""
        box = [value if self.is_main else None]
        self.dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def average(self, value: float) -> float:
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def gather(self, value) -> list:
        """Every rank's value, on every rank (small objects: RNG states)."""
        values = [None] * self.world_size
        self.dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        self.dist.barrier()

    def reducer(self, params, multi_gpu, seed: int):
        return GradientReducer(self, params, multi_gpu, seed)

    def same_values(self, params) -> None:
        """Rank 0's values into every rank's tensors (the trained weights at the start)."""
        with torch.no_grad():
            for param in params:
                self.dist.broadcast(param.data, src=0)

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()

    def _object_device(self):
        return self.device if self.device.type == "cuda" else None


class GradientReducer:
    """Averages the trained parameters' gradients over the ranks before an optimizer step.

    ``fused_gradient_reduce`` packs the gradients into ~25 MB flat buckets (few large messages,
    as DDP does) instead of one message per tensor; ``async_gradient_reduce`` puts every bucket
    on the wire before waiting for the first, so the transfers overlap each other and the
    packing. ``gradient_reduce_precision``: FLOAT_32* sums in float32; WEIGHT_DTYPE* in the
    parameter's dtype; *_STOCHASTIC rounds a float32 sum back into a lower-precision gradient
    stochastically, from a generator all ranks seed alike (so they stay identical)."""

    def __init__(self, group: Group, params, multi_gpu, seed: int):
        self.group, self.params = group, list(params)
        self.fused, self.async_reduce = multi_gpu.fused, multi_gpu.async_reduce
        self.precision = multi_gpu.reduce_precision
        self.rounding = torch.Generator(device=group.device).manual_seed(seed + 7919)

    def reduce(self) -> None:
        import time
        started = time.perf_counter()
        with_grad = [p for p in self.params if p.grad is not None]
        if len(with_grad) != len(self.params):  # ranks must send the same tensors: zeros for none
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        pending = [self._launch(bucket) for bucket in self._buckets()]
        for bucket, sent, handle in pending:
            if handle is not None:
                handle.wait()
            self._unpack(bucket, sent)
        self.group.reduce_seconds += time.perf_counter() - started
        self.group.reduces += 1

    def _buckets(self) -> list[list[torch.Tensor]]:
        if not self.fused:
            return [[p] for p in self.params]
        buckets, current, size = [], [], 0
        for p in self.params:
            key = (p.grad.dtype, p.grad.device)
            if current and (size >= BUCKET_BYTES or (current[0].grad.dtype, current[0].grad.device) != key):
                buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += p.grad.numel() * p.grad.element_size()
        return buckets + ([current] if current else [])

    def _wire_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.float32 if self.precision.startswith("FLOAT_32") else dtype

    def _launch(self, bucket):
        grads = [p.grad for p in bucket]
        wire = self._wire_dtype(grads[0].dtype)
        flat = (torch.cat([g.reshape(-1) for g in grads]) if len(grads) > 1 else grads[0].reshape(-1))
        flat = flat.to(wire)  # a lone gradient is reduced in place (a view), else a packed copy
        handle = self.group.dist.all_reduce(flat, async_op=self.async_reduce)
        return bucket, flat, handle

    def _unpack(self, bucket, flat: torch.Tensor) -> None:
        flat.div_(self.group.world_size)
        offset = 0
        for p in bucket:
            count = p.grad.numel()
            part = flat[offset:offset + count].view_as(p.grad)
            offset += count
            if part.dtype != p.grad.dtype and self.precision.endswith("STOCHASTIC"):
                part = stochastic_round(part, p.grad.dtype, self.rounding)
            p.grad.copy_(part)


def stochastic_round(values: torch.Tensor, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """float32 → bfloat16 rounded up or down with the odds of the distance (unbiased on average);
    other targets round to nearest."""
    if dtype is not torch.bfloat16 or values.dtype is not torch.float32:
        return values.to(dtype)
    bits = values.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, generator=generator, device=bits.device, dtype=torch.int32)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


def rank_device(train_device: str, multi_gpu, rank: int) -> str:
    """The device of a rank: cuda:<its index> for a CUDA run, the CPU for a CPU one."""
    if train_device.strip().startswith("cpu"):
        return "cpu"
    return f"cuda:{multi_gpu.device_indexes[rank]}"

