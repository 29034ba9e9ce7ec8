"""Which backend a config runs on: one pure function for the web (validation) and the trainer
process (``trainer/backend_factory.make_backend``). No torch, no OneTrainer import.

The config's ``backend`` key ("builtin" or "onetrainer") decides when present. When absent, the
built-in trainer takes what it supports (model type and training method) and OneTrainer the
rest, if it is installed. "Installed" means ``ONETRAINER_DIR`` is set: the web reads it from its
own environment (in ``otweb serve`` the worker shares it), the trainer process from the worker's.
``otweb worker --check`` is the authoritative report of whether it imports.
"""
from __future__ import annotations

from dataclasses import dataclass

from webapp.config.builtin.multi_gpu import requested_gpus
from webapp.config.builtin.train_settings import SUPPORTED_METHODS, SUPPORTED_MODEL_TYPES
from webapp.settings import ONETRAINER_DIR_ENV, env_text

BUILTIN, ONETRAINER = "builtin", "onetrainer"
BACKENDS = (BUILTIN, ONETRAINER)
ENV_VAR = ONETRAINER_DIR_ENV
INSTALL_HINT = ("install OneTrainer (git clone https://github.com/Nerogar/OneTrainer and its install "
                "script) on the worker's host and set ONETRAINER_DIR to the checkout")
# OneTrainer's own defaults, for a partial config that leaves them out
DEFAULT_MODEL_TYPE, DEFAULT_METHOD = "STABLE_DIFFUSION_15", "FINE_TUNE"


@dataclass(frozen=True)
class BackendChoice:
    backend: str | None          # None: nothing here can run it (see reason)
    reason: str
    builtin_supported: bool      # the built-in trainer supports the model type and method
    onetrainer_available: bool   # ONETRAINER_DIR is set

    def as_json(self) -> dict:
        return {"name": self.backend, "reason": self.reason, "builtin_supported": self.builtin_supported,
                "onetrainer_available": self.onetrainer_available}


def onetrainer_dir(environ=None) -> str | None:
    return env_text(ENV_VAR, "", environ) or None


def builtin_gaps(config: dict) -> list[str]:
    """What of the config's model type and method the built-in trainer cannot train."""
    model_type = config.get("model_type") or DEFAULT_MODEL_TYPE
    method = config.get("training_method") or DEFAULT_METHOD
    gaps = []
    if model_type not in SUPPORTED_MODEL_TYPES:
        gaps.append(f"model type {model_type}")
    if method not in SUPPORTED_METHODS:
        gaps.append(f"training method {method}")
    return gaps


def choose_backend(config: dict, onetrainer_path: str | None) -> BackendChoice:
    gaps = builtin_gaps(config)
    available = bool(onetrainer_path)
    supported = not gaps

    def choice(backend, reason):
        return BackendChoice(backend, reason, supported, available)

    asked = config.get("backend")
    if asked not in (None, "", *BACKENDS):
        return choice(None, f"unknown backend {asked!r}: use one of {', '.join(BACKENDS)}")
    if asked == ONETRAINER:
        if available:
            return choice(ONETRAINER, "the config asks for OneTrainer")
        return choice(None, f"the config asks for OneTrainer, which is not set up here: {INSTALL_HINT}")
    if asked == BUILTIN:
        return choice(BUILTIN, "the config asks for the built-in trainer")
    if supported:  # said only where there is a choice (the editor leaves the usual case unsaid)
        return choice(BUILTIN, "OneTrainer is set up here too: set the config's backend to onetrainer to train "
                               "with it" if available else "it trains this model type and method")
    missing = " and ".join(gaps)
    if available:
        return choice(ONETRAINER, f"the built-in trainer does not support {missing}; OneTrainer does")
    return choice(BUILTIN, f"the built-in trainer does not support {missing}; OneTrainer does: {INSTALL_HINT}")


def ranks_to_start(config: dict, directory: str | None = None) -> int:
    """How many trainer processes the worker starts for a run: one per requested device for the
    built-in trainer; one for OneTrainer, which gets the multi-GPU fields as they are and starts
    its own ranks."""
    if choose_backend(config, directory if directory is not None else onetrainer_dir()).backend != BUILTIN:
        return 1
    return requested_gpus(config)
