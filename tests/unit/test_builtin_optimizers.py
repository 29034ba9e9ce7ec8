"""Optimizers and learning-rate schedules of the built-in trainer, on tiny CPU problems.

The expected learning rates are written out here from the schedule formulas (exact fractions
where a hard restart's cycle boundary falls), never by calling lr_factor."""
from __future__ import annotations

import copy
import io
import json
import math
import subprocess
import sys
import types
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from webapp.config.builtin import optimizer_names
from webapp.trainer.builtin import optimizers
from webapp.trainer.builtin.lr_schedule import make_lr_scheduler
from webapp.trainer.builtin.optimizers import make_optimizer
from webapp.config.builtin.optimizer_names import DEFAULT_SETTINGS, SUPPORTED_LR_SCHEDULERS, SUPPORTED_OPTIMIZERS, read_optimizer

ROOT = Path(__file__).resolve().parents[2]
ONETRAINER_DEFAULTS = Path("/work/shared/onetrainer/default_train_config.json")


def expected_factor(step: int, scheduler: str, warmup: int, max_step: int, cycles=1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = Fraction(step - warmup, max_step - warmup)
    if scheduler == "CONSTANT":
        return 1.0
    if scheduler == "LINEAR":
        return float(1 - progress)
    if scheduler == "COSINE":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if scheduler == "COSINE_WITH_RESTARTS":
        return 0.5 * (1 + math.cos(2 * math.pi * Fraction(cycles) * progress))
    if scheduler == "COSINE_WITH_HARD_RESTARTS":
        return 0.5 * (1 + math.cos(math.pi * ((Fraction(cycles) * progress) % 1)))
    raise AssertionError(scheduler)


def two_groups(module: torch.nn.Linear, weight_lr: float, bias_lr: float) -> list[dict]:
    return [{"params": [module.weight], "lr": weight_lr}, {"params": [module.bias], "lr": bias_lr}]


# -- (a) every scheduler, with and without warm-up, several cycle counts --

SCHEDULE_CASES = [(s, warmup, 1) for s in ("CONSTANT", "LINEAR", "COSINE") for warmup in (0, 4)] + [
    (s, warmup, cycles) for s in ("COSINE_WITH_RESTARTS", "COSINE_WITH_HARD_RESTARTS")
    for warmup in (0, 4) for cycles in (1, 2, 1.5)]


@pytest.mark.parametrize("scheduler,warmup,cycles", SCHEDULE_CASES)
def test_lr_follows_the_schedule_formula_at_every_step(scheduler, warmup, cycles):
    assert {case[0] for case in SCHEDULE_CASES} == set(SUPPORTED_LR_SCHEDULERS)
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    base_lrs = (0.1, 0.025)
    optimizer = torch.optim.SGD(two_groups(module, *base_lrs))
    max_step = 20
    lr_scheduler = make_lr_scheduler(optimizer, scheduler, warmup, max_step, cycles=cycles)
    x = torch.randn(5, 3)
    for step in range(max_step):
        factor = expected_factor(step, scheduler, warmup, max_step, cycles)
        for group, base_lr in zip(optimizer.param_groups, base_lrs):
            assert group["lr"] == pytest.approx(base_lr * factor, abs=1e-12), (step, group["lr"])
        optimizer.zero_grad()
        module(x).pow(2).mean().backward()
        optimizer.step()
        lr_scheduler.step()


@pytest.mark.parametrize("scheduler,warmup,cycles,step,factor", [
    ("LINEAR", 0, 1, 10, 0.5),                     # half way down
    ("LINEAR", 4, 1, 0, 0.25),                     # first warm-up step: 1/4
    ("COSINE", 0, 1, 10, 0.5),                     # the cosine's midpoint
    ("COSINE_WITH_RESTARTS", 0, 2, 5, 0.0),        # two smooth cycles: bottom at a quarter
    ("COSINE_WITH_RESTARTS", 0, 2, 10, 1.0),       # ... back up to 1 at half way
    ("COSINE_WITH_RESTARTS", 4, 1, 12, 0.0),       # one cycle after 4 warm-up steps: bottom at 4+8
    ("COSINE_WITH_HARD_RESTARTS", 0, 2, 9, 0.5 * (1 + math.cos(math.pi * 0.9))),
    ("COSINE_WITH_HARD_RESTARTS", 0, 2, 10, 1.0),  # the restart
    # 1.5 cycles: at 15 of 20 steps the position is 1.125, an eighth into the second cycle
    ("COSINE_WITH_HARD_RESTARTS", 0, 1.5, 15, 0.5 * (1 + math.cos(math.pi / 8))),
    ("COSINE_WITH_HARD_RESTARTS", 0, 2, 20, 0.0),  # past the last step: the end, no restart
])
def test_schedule_spot_values(scheduler, warmup, cycles, step, factor):
    """Anchors worked out by hand, for 20 steps and a base lr of 1."""
    module = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    lr_scheduler = make_lr_scheduler(optimizer, scheduler, warmup, 20, cycles=cycles)
    for _ in range(step):
        optimizer.step()
        lr_scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(factor, abs=1e-12)


def test_scheduler_arguments_are_checked():
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    with pytest.raises(ValueError, match="COSINE_WITH_HARD_RESTARTS"):
        make_lr_scheduler(optimizer, "REX", 0, 10)
    with pytest.raises(ValueError, match="learning_rate_cycles"):
        make_lr_scheduler(optimizer, "COSINE_WITH_RESTARTS", 0, 10, cycles=0)
    make_lr_scheduler(optimizer, "CONSTANT", 0, 10, cycles=0)  # cycles only matter to restarts


# -- (b) every optimizer on a tiny regression problem --

# learning rates each optimizer makes progress with in 20 steps; PRODIGY's is a multiplier of its
# own estimated step size (which takes ~15 steps to grow from d0), and it needs the same rate in
# every group
OPTIMIZER_LRS = {"ADAMW": (0.01, 0.005), "ADAMW_8BIT": (0.01, 0.005), "ADAFACTOR": (0.01, 0.005),
                 "PRODIGY": (1.0, 1.0), "SGD": (0.3, 0.15), "LION": (0.01, 0.005)}
STEPS, WARMUP = 20, 3


def regression_problem():
    """A 64x64 linear map to learn: its weight (4096 values) is big enough for bitsandbytes'
    8-bit state, which starts at 4096 elements."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 64, generator=generator)
    y = 0.1 * (x @ torch.randn(64, 64, generator=generator)) + 0.1
    torch.manual_seed(2)
    return torch.nn.Linear(64, 64), x, y


def train_step(module, optimizer, lr_scheduler, x, y) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(module(x), y)
    loss.backward()
    optimizer.step()
    lr_scheduler.step()
    return loss.item()


def build(name, module):
    groups = two_groups(module, *OPTIMIZER_LRS[name])
    optimizer = make_optimizer(name, DEFAULT_SETTINGS[name], groups)
    return optimizer, make_lr_scheduler(optimizer, "COSINE", WARMUP, STEPS + 1)


@pytest.mark.parametrize("name", SUPPORTED_OPTIMIZERS)
def test_optimizer_trains_follows_the_schedule_and_resumes_exactly(name):
    assert set(OPTIMIZER_LRS) == set(SUPPORTED_OPTIMIZERS)
    module, x, y = regression_problem()
    before = copy.deepcopy(module.state_dict())
    try:
        optimizer, lr_scheduler = build(name, module)
    except RuntimeError as error:
        # only ADAMW_8BIT may be refused, where bitsandbytes is missing or cannot run on this
        # device (bitsandbytes 0.50.2 runs it on the CPU); then the refusal must say why
        # and what to use instead
        assert name == "ADAMW_8BIT", error
        assert "bitsandbytes" in str(error) and "ADAMW" in str(error)
        return
    losses = []
    for step in range(STEPS):
        factor = expected_factor(step, "COSINE", WARMUP, STEPS + 1)
        for group, base_lr in zip(optimizer.param_groups, OPTIMIZER_LRS[name]):
            assert group["lr"] == pytest.approx(base_lr * factor, abs=1e-12), (step, group["lr"])
        losses.append(train_step(module, optimizer, lr_scheduler, x, y))
    assert losses[-1] < 0.9 * losses[0], losses
    assert not torch.equal(module.weight, before["weight"])
    assert not torch.equal(module.bias, before["bias"])

    # a backup's round trip: bytes on disk, then a fresh optimizer and scheduler built as on resume
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()},
               buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed_module = copy.deepcopy(module)
    resumed_optimizer, resumed_scheduler = build(name, resumed_module)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_scheduler.load_state_dict(saved["lr_scheduler"])

    train_step(module, optimizer, lr_scheduler, x, y)
    train_step(resumed_module, resumed_optimizer, resumed_scheduler, x, y)
    assert torch.equal(module.weight, resumed_module.weight)
    assert torch.equal(module.bias, resumed_module.bias)
    assert ([g["lr"] for g in optimizer.param_groups]
            == [g["lr"] for g in resumed_optimizer.param_groups])


def test_adamw_8bit_keeps_8bit_state_here():
    """Where bitsandbytes runs (0.50.2 does on the CPU), the weight's Adam state is 8-bit;
    where it cannot, the clear error is asserted instead."""
    module, x, y = regression_problem()
    try:
        optimizer, lr_scheduler = build("ADAMW_8BIT", module)
    except RuntimeError as error:
        assert "ADAMW" in str(error)
        return
    train_step(module, optimizer, lr_scheduler, x, y)
    assert optimizer.state[module.weight]["state1"].dtype == torch.uint8


def test_adamw_8bit_without_bitsandbytes_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    module = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=r"bitsandbytes.*choose the optimizer ADAMW"):
        make_optimizer("ADAMW_8BIT", {}, two_groups(module, 0.01, 0.01))


def test_adamw_8bit_that_cannot_run_on_the_device_says_so(monkeypatch):
    """Older bitsandbytes builds import on a CPU-only machine and fail at the first step."""
    class CudaOnlyAdamW8bit:
        def __init__(self, *args, **kwargs):
            pass

        def step(self):
            raise RuntimeError("CUDA Setup failed despite GPU being available")

    fake = types.SimpleNamespace(__version__="0.41.0",
                                 optim=types.SimpleNamespace(AdamW8bit=CudaOnlyAdamW8bit))
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    monkeypatch.setattr(optimizers, "_bitsandbytes_runs_on", {})
    module = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=r"cannot run its 8-bit AdamW on cpu.*CUDA Setup failed"
                                           r".*Choose the optimizer ADAMW"):
        make_optimizer("ADAMW_8BIT", {}, two_groups(module, 0.01, 0.01))


def test_prodigy_needs_one_learning_rate_for_all_groups():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="must be equal"):
        make_optimizer("PRODIGY", {}, two_groups(module, 1.0, 0.5))
    make_optimizer("PRODIGY", {}, two_groups(module, 1.0, 0.0))  # 0 = a frozen part, allowed


def test_lion_follows_the_paper_update():
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = make_optimizer("LION", {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.5},
                               [{"params": [param], "lr": 0.1}])
    grads = [torch.tensor([0.5, -1.0, 0.0]), torch.tensor([-2.0, 0.1, 0.3])]
    expected, momentum = torch.tensor([1.0, -2.0, 3.0]), torch.zeros(3)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
        update = torch.sign(0.9 * momentum + 0.1 * grad)
        expected = expected - 0.1 * (update + 0.5 * expected)
        momentum = 0.99 * momentum + 0.01 * grad
    assert torch.allclose(param.detach(), expected)


def test_make_optimizer_refuses_what_read_optimizer_refuses():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="optimizer.weight_decay"):
        make_optimizer("ADAMW", {"weight_decay": -1}, two_groups(module, 0.01, 0.01))
    with pytest.raises(ValueError, match="optimizer.optimizer"):
        make_optimizer("ADAM", {}, two_groups(module, 0.01, 0.01))
    with pytest.raises(ValueError, match="no 'lr'"):
        make_optimizer("SGD", {}, [{"params": list(module.parameters())}])


# -- (c) reading the config's optimizer object --

SETTING_NAMES = {
    "ADAMW": {"beta1", "beta2", "eps", "weight_decay", "amsgrad"},
    "ADAMW_8BIT": {"beta1", "beta2", "eps", "weight_decay", "min_8bit_size"},
    "ADAFACTOR": {"eps", "eps2", "clip_threshold", "decay_rate", "beta1", "weight_decay",
                  "scale_parameter", "relative_step", "warmup_init"},
    "PRODIGY": {"beta1", "beta2", "beta3", "eps", "weight_decay", "d0", "d_coef", "growth_rate",
                "use_bias_correction", "safeguard_warmup", "decouple"},
    "SGD": {"momentum", "dampening", "nesterov", "weight_decay"},
    "LION": {"beta1", "beta2", "weight_decay"},
}


@pytest.mark.parametrize("raw", [None, {}, {"optimizer": None}])
def test_missing_optimizer_means_adamw_defaults(raw):
    assert read_optimizer(raw) == ("ADAMW", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                             "weight_decay": 0.01, "amsgrad": False}, [])


@pytest.mark.parametrize("name", SUPPORTED_OPTIMIZERS)
def test_onetrainer_default_object_reads_for_every_optimizer(name):
    raw = json.loads(ONETRAINER_DEFAULTS.read_text())["optimizer"]
    assert raw["optimizer"] == "ADAMW"
    read_name, settings, errors = read_optimizer({**raw, "optimizer": name})
    assert (read_name, errors) == (name, [])
    assert set(settings) == SETTING_NAMES[name]
    for key, value in settings.items():
        # OneTrainer's nulls take our defaults; its booleans (never null there) are kept
        assert value == (raw[key] if raw[key] is not None else DEFAULT_SETTINGS[name][key]), key


def test_nulls_take_defaults_and_values_are_kept():
    name, settings, errors = read_optimizer({"optimizer": "PRODIGY", "beta1": None, "d_coef": 2,
                                             "growth_rate": None, "decouple": None})
    assert errors == []
    assert settings["beta1"] == 0.9 and settings["growth_rate"] == math.inf
    assert settings["decouple"] is True
    assert settings["d_coef"] == 2.0 and isinstance(settings["d_coef"], float)
    _, settings, errors = read_optimizer({"optimizer": "ADAFACTOR", "beta1": 0.9})
    assert errors == [] and settings["beta1"] == 0.9 and settings["eps2"] == 1e-3


def test_unsupported_name_lists_the_supported_ones():
    name, settings, errors = read_optimizer({"optimizer": "CAME"})
    assert (name, settings) == ("CAME", {})
    assert [e["field"] for e in errors] == ["optimizer.optimizer"]
    assert all(supported in errors[0]["message"] for supported in SUPPORTED_OPTIMIZERS)


def test_an_optimizer_that_is_not_an_object():
    name, settings, errors = read_optimizer("ADAMW")
    assert name == "ADAMW" and settings == DEFAULT_SETTINGS["ADAMW"]
    assert [e["field"] for e in errors] == ["optimizer"]


@pytest.mark.parametrize("name,key,value", [
    ("ADAMW", "weight_decay", -0.1),
    ("ADAMW", "beta1", 1.0),
    ("ADAMW", "beta2", -0.5),
    ("ADAMW", "beta2", "0.99"),          # a string where a number belongs
    ("ADAMW", "eps", 0),
    ("ADAMW", "eps", float("nan")),
    ("ADAMW", "weight_decay", True),     # a boolean is no number
    ("ADAMW", "amsgrad", "yes"),
    ("ADAMW_8BIT", "min_8bit_size", 10.5),
    ("ADAFACTOR", "decay_rate", 0.8),
    ("ADAFACTOR", "clip_threshold", -1),
    ("ADAFACTOR", "relative_step", True),  # it would ignore the learning rate and its schedule
    ("ADAFACTOR", "warmup_init", True),
    ("PRODIGY", "beta3", 1.5),
    ("PRODIGY", "d0", 0.0),
    ("PRODIGY", "growth_rate", 0.5),
    ("PRODIGY", "eps", float("inf")),
    ("SGD", "momentum", -0.9),
    ("SGD", "nesterov", True),           # with the default momentum 0
    ("LION", "beta1", 2),
])
def test_bad_values_are_errors_on_their_field(name, key, value):
    read_name, settings, errors = read_optimizer({"optimizer": name, key: value})
    assert read_name == name
    assert [e["field"] for e in errors] == [f"optimizer.{key}"], errors
    assert errors[0]["message"]
    if key not in ("relative_step", "warmup_init", "nesterov"):  # value-checked: default in place
        assert settings[key] == DEFAULT_SETTINGS[name][key]


def test_nesterov_with_momentum_reads():
    assert read_optimizer({"optimizer": "SGD", "momentum": 0.9, "nesterov": True})[2] == []


def test_optimizer_names_does_not_import_torch():
    code = ("import sys, webapp.config.builtin.optimizer_names as m; m.read_optimizer(None); "
            "assert not {'torch', 'transformers', 'bitsandbytes'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_same_scheduler_names_as_the_module():
    assert optimizer_names.SUPPORTED_LR_SCHEDULERS == (
        "CONSTANT", "LINEAR", "COSINE", "COSINE_WITH_RESTARTS", "COSINE_WITH_HARD_RESTARTS")
