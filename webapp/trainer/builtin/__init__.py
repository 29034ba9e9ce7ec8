"""The built-in diffusers trainer (imports torch): a LoRA on a Stable Diffusion 1.x UNet."""
from .backend import BuiltinBackend

__all__ = ["BuiltinBackend"]
