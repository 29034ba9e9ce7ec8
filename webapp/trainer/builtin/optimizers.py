"""Building the optimizer the config names (see ``webapp.config.builtin.optimizer_names``).

Every optimizer takes the caller's param groups as they are, each with its own ``lr`` (the
per-part learning rates), so the LR schedule scales each group's own rate. All of them are
``torch.optim.Optimizer`` subclasses, so ``state_dict()``/``load_state_dict()`` carry their
whole state into backups.

ADAMW_8BIT (bitsandbytes) is tried once per device type with one real step on a throwaway
tensor: bitsandbytes releases differ in which devices they run on (0.50.2 runs its 8-bit AdamW
on the CPU; older releases were CUDA-only, and a broken native library may import and fail only
at the first step), so trying is the only reliable test. When it is missing or fails, the
error says so and suggests ADAMW.
"""
from __future__ import annotations

import torch

from webapp.config.builtin.optimizer_names import DEFAULT_SETTINGS, read_optimizer


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), written here.

    Per step: ``update = sign(beta1 * m + (1 - beta1) * grad)``;
    ``p -= lr * (update + weight_decay * p)`` (decoupled weight decay, applied as
    ``p *= 1 - lr * weight_decay`` first); then ``m = beta2 * m + (1 - beta2) * grad``.
    Every coordinate moves by exactly ``lr``, so Lion wants a learning rate 3-10x smaller than
    AdamW's.
    """

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"Lion: the learning rate must be at least 0, not {lr}")
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"Lion: betas must be in [0, 1), not {betas}")
        if weight_decay < 0:
            raise ValueError(f"Lion: weight_decay must be at least 0, not {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                momentum = state["exp_avg"]
                param.mul_(1 - lr * weight_decay)
                update = momentum.mul(beta1).add_(param.grad, alpha=1 - beta1).sign_()
                param.add_(update, alpha=-lr)
                momentum.mul_(beta2).add_(param.grad, alpha=1 - beta2)
        return loss


def make_optimizer(name: str, settings: dict, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``param_groups`` (each a dict with "params" and its own "lr").

    ``settings`` are ``read_optimizer``'s (OneTrainer's field names); missing keys take the
    defaults. Raises ValueError for a bad name or value, RuntimeError when ADAMW_8BIT cannot run.
    """
    checked_name, settings, errors = read_optimizer(
        {**DEFAULT_SETTINGS.get(name, {}), **settings, "optimizer": name})
    if errors:
        raise ValueError("; ".join(f"{e['field']}: {e['message']}" for e in errors))
    missing_lr = [i for i, group in enumerate(param_groups) if "lr" not in group]
    if missing_lr:
        # torch would quietly use its own default rate for them
        raise ValueError(f"param groups {missing_lr} have no 'lr'")
    return _BUILDERS[checked_name](settings, param_groups)


def _adamw(s: dict, groups: list[dict]):
    return torch.optim.AdamW(groups, betas=(s["beta1"], s["beta2"]), eps=s["eps"],
                             weight_decay=s["weight_decay"], amsgrad=s["amsgrad"])


def _adamw_8bit(s: dict, groups: list[dict]):
    bitsandbytes = _import_bitsandbytes()
    device = next((p.device for g in groups for p in g["params"]), torch.device("cpu"))
    _check_bitsandbytes_runs(bitsandbytes, device)
    return bitsandbytes.optim.AdamW8bit(groups, betas=(s["beta1"], s["beta2"]), eps=s["eps"],
                                        weight_decay=s["weight_decay"],
                                        min_8bit_size=s["min_8bit_size"])


def _import_bitsandbytes():
    try:
        import bitsandbytes
    except Exception as error:  # a broken native library raises more than ImportError
        raise RuntimeError(
            "ADAMW_8BIT needs the bitsandbytes package, which cannot be imported in the "
            f"trainer's environment ({type(error).__name__}: {error}). Install it "
            "(pip install bitsandbytes) or choose the optimizer ADAMW.") from error
    return bitsandbytes


_bitsandbytes_runs_on: dict[str, str | None] = {}  # device type -> None (runs) or the failure


def _check_bitsandbytes_runs(bitsandbytes, device: torch.device) -> None:
    if device.type not in _bitsandbytes_runs_on:
        _bitsandbytes_runs_on[device.type] = _try_bitsandbytes(bitsandbytes, device)
    failure = _bitsandbytes_runs_on[device.type]
    if failure:
        raise RuntimeError(
            f"ADAMW_8BIT: bitsandbytes {getattr(bitsandbytes, '__version__', '')} cannot run its "
            f"8-bit AdamW on {device.type} here ({failure}). Choose the optimizer ADAMW.")


def _try_bitsandbytes(bitsandbytes, device: torch.device) -> str | None:
    """One step on a tensor big enough (4096 elements) to take the real 8-bit path."""
    try:
        probe = torch.nn.Parameter(torch.ones(4096, device=device))
        probe.grad = torch.ones_like(probe)
        bitsandbytes.optim.AdamW8bit([probe], lr=0.1).step()
        if torch.equal(probe.detach(), torch.ones_like(probe)):
            return "a step left the parameters unchanged"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _adafactor(s: dict, groups: list[dict]):
    from transformers.optimization import Adafactor  # only here: transformers is slow to import

    # relative_step and warmup_init are always false here (read_optimizer refuses them), so the
    # group lr is the step size and the schedule applies
    return Adafactor(groups, eps=(s["eps"], s["eps2"]), clip_threshold=s["clip_threshold"],
                     decay_rate=s["decay_rate"], beta1=s["beta1"], weight_decay=s["weight_decay"],
                     scale_parameter=s["scale_parameter"], relative_step=False, warmup_init=False)


def _prodigy(s: dict, groups: list[dict]):
    try:
        from prodigyopt import Prodigy
    except ImportError as error:
        raise RuntimeError("PRODIGY needs the prodigyopt package "
                           "(pip install prodigyopt)") from error
    # Prodigy learns one step size d for all groups; its lr multiplies d, and prodigyopt refuses
    # groups whose lr differs (0 aside) at the first step, deep in training: say it now
    rates = {g["lr"] for g in groups if g["lr"] != 0}
    if len(rates) > 1:
        raise ValueError("PRODIGY learns one step size for all model parts, so their learning "
                         f"rates must be equal (usually 1.0), not {sorted(rates)}")
    return Prodigy(groups, betas=(s["beta1"], s["beta2"]), beta3=s["beta3"], eps=s["eps"],
                   weight_decay=s["weight_decay"], decouple=s["decouple"],
                   use_bias_correction=s["use_bias_correction"],
                   safeguard_warmup=s["safeguard_warmup"], d0=s["d0"], d_coef=s["d_coef"],
                   growth_rate=s["growth_rate"])


def _sgd(s: dict, groups: list[dict]):
    return torch.optim.SGD(groups, momentum=s["momentum"], dampening=s["dampening"],
                           nesterov=s["nesterov"], weight_decay=s["weight_decay"])


def _lion(s: dict, groups: list[dict]):
    return Lion(groups, betas=(s["beta1"], s["beta2"]), weight_decay=s["weight_decay"])


_BUILDERS = {"ADAMW": _adamw, "ADAMW_8BIT": _adamw_8bit, "ADAFACTOR": _adafactor,
             "PRODIGY": _prodigy, "SGD": _sgd, "LION": _lion}
