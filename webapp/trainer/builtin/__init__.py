"""The built-in diffusers trainer (imports torch): SD 1.x, 2.x and SDXL; LoRA, fine-tune, embedding.

``BuiltinBackend`` is imported on first use, so that importing one helper module (optimizers,
lr_schedule, ...) does not load diffusers.
"""

__all__ = ["BuiltinBackend"]


def __getattr__(name):
    if name == "BuiltinBackend":
        from webapp.trainer.builtin.backend import BuiltinBackend
        return BuiltinBackend
    raise AttributeError(name)
