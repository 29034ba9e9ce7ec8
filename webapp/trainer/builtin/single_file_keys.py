"""Diffusers state dicts renamed into the original single-file layout of Stable Diffusion.

The original checkpoints (CompVis's LDM for SD 1.x/2.x, Stability's SGM for SDXL) keep every
part in one state dict under a prefix: the UNet under ``model.diffusion_model.``, the VAE under
``first_stage_model.``, the text encoder under ``cond_stage_model.transformer.`` (SD 1.x, the
Hugging Face CLIP layout), ``cond_stage_model.model.`` (SD 2.x, OpenCLIP's layout: fused q/k/v,
``resblocks``) or ``conditioner.embedders.0.transformer.`` and ``conditioner.embedders.1.model.``
(SDXL's two encoders). The names here are written from the layouts themselves; diffusers' own
single-file loading (``from_single_file``) reads them back and is the tests' oracle.
"""
from __future__ import annotations

import re

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

# LDM's ResBlock: in_layers = (norm, SiLU, conv), emb_layers = (SiLU, linear),
# out_layers = (norm, SiLU, dropout, conv); its shortcut conv is skip_connection
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
VAE_FIXED = {"conv_norm_out": "norm_out"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                   "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}


class UnknownKeyError(ValueError):
    """A weight that the original layout has no name for (an unusual architecture)."""


def _split(rest: str, names: dict[str, str]) -> str:
    """Rename the leading module of ``rest`` ("conv1.weight" -> "in_layers.2.weight")."""
    for old, new in names.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def unet_to_original(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The UNet's weights under LDM/SGM names (``input_blocks``, ``middle_block``,
    ``output_blocks``), without the ``model.diffusion_model.`` prefix."""
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        raise UnknownKeyError("a UNet with a different number of layers per block has no "
                              "original single-file layout")
    step = per_block + 1  # each down block: per_block layers and a downsampler; up blocks: step layers
    up_with_attention = {int(m.group(1)) for key in state
                         if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", key))}
    out = {}
    for key, value in state.items():
        out[_unet_name(key, step, up_with_attention)] = value
    return out


def _unet_name(key: str, step: int, up_with_attention: set[int]) -> str:
    for old, new in UNET_FIXED.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * step + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_split(rest, UNET_RESNET)}"
        return f"input_blocks.{index}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * step}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_split(m[2], UNET_RESNET)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * step + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_split(rest, UNET_RESNET)}"
        return f"output_blocks.{index}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        # the upsampler follows the block's last resnet, and its attention when it has one
        slot = 2 if block in up_with_attention else 1
        return f"output_blocks.{block * step + step - 1}.{slot}.conv.{m[2]}"
    raise UnknownKeyError(f"the UNet weight {key} has no name in the original layout")


def vae_to_original(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The VAE's weights under LDM names (``encoder.down.0.block.0``, ``decoder.up.3``, ...),
    without the ``first_stage_model.`` prefix. LDM's decoder counts its up blocks from the lowest
    resolution, the reverse of diffusers; its mid-block attention uses 1x1 convolutions."""
    count = len(config["up_block_types"])
    return {_vae_name(key, count): _vae_value(key, value) for key, value in state.items()}


def _vae_value(key: str, value: torch.Tensor) -> torch.Tensor:
    if ".mid_block.attentions." in key and key.endswith(".weight") and value.ndim == 2:
        return value[:, :, None, None]  # linear -> 1x1 conv
    return value


def _vae_name(key: str, count: int) -> str:
    part, _, rest = key.partition(".")
    if part in ("quant_conv", "post_quant_conv"):
        return key
    if part not in ("encoder", "decoder"):
        raise UnknownKeyError(f"the VAE weight {key} has no name in the original layout")
    if rest.split(".")[0] in ("conv_in", "conv_out", "conv_norm_out"):
        return f"{part}.{_split(rest, VAE_FIXED)}"
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        return f"{part}.down.{m[1]}.block.{m[2]}.{_split(m[3], {'conv_shortcut': 'nin_shortcut'})}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest):
        return f"{part}.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        block = count - 1 - int(m[1])
        return f"{part}.up.{block}.block.{m[2]}.{_split(m[3], {'conv_shortcut': 'nin_shortcut'})}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest):
        return f"{part}.up.{count - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{part}.mid.block_{int(m[1]) + 1}.{m[2]}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", rest):
        return f"{part}.mid.attn_1.{_split(m[1], VAE_ATTENTION)}"
    raise UnknownKeyError(f"the VAE weight {key} has no name in the original layout")


def clip_state(text_encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under the Hugging Face names with ``text_model.``: transformers 5.6+
    flattened CLIPTextModel (no ``text_model.`` level), the original layout keeps it."""
    state = text_encoder.state_dict()
    if hasattr(text_encoder, "text_model"):
        return dict(state)
    return {f"text_model.{key}": value for key, value in state.items()}


def clip_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP (SD 1.x, SDXL's first encoder): the Hugging Face layout itself."""
    return {key: value for key, value in state.items() if not key.endswith("position_ids")}


def open_clip_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's layout (SD 2.x, SDXL's second encoder): ``resblocks`` with q, k and v fused
    into one ``in_proj``, the projection as a plain matrix (transposed)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(\w+)$", key):
            fused.setdefault(f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = value
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            out[f"transformer.resblocks.{m[1]}.{_split(m[2], OPEN_CLIP_LAYER)}"] = value
        else:
            raise UnknownKeyError(f"the text encoder weight {key} has no name in OpenCLIP's layout")
    for key, parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise UnknownKeyError(f"{key}: q, k and v projections are incomplete")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def with_prefix(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}
