"""What trains, per training method: LoRA adapters, whole parts (fine-tune), or new token
vectors (textual inversion). Each trained thing is a ``TrainedGroup``: its parameters by name
(for backups and EMA), its learning rate, and the optimizer step after which it stops.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig

from webapp.trainer.builtin.embedding import EmbeddingTokens

TEXT_LAYERS_ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
TEXT_LAYERS_MLP = ("mlp.fc1", "mlp.fc2")


@dataclass
class TrainedGroup:
    name: str                          # unet, text_encoder, text_encoder_2, embedding
    params: dict[str, torch.nn.Parameter]
    learning_rate: float
    stop_after: int | None = None      # optimizer steps; None = trains to the end

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{self.name}/{key}": p.detach() for key, p in self.params.items()}


def unet_lora_targets(unet, layer_filter: list[str]) -> list[str]:
    """Full names of the UNet's Linear/Conv2d layers that match the filter (any substring; an
    empty filter = every layer)."""
    names = [name for name, module in unet.named_modules()
             if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
             and (not layer_filter or any(piece in name for piece in layer_filter))]
    if not names:
        raise ValueError(f"the layer filter {', '.join(layer_filter)} matches no layer of the UNet")
    return names


def text_lora_targets(encoder, layer_filter: list[str]) -> list[str]:
    """The text encoder's attention (and MLP) projections. OneTrainer's presets name UNet
    modules ("attentions" = whole transformer blocks, "attn" = attention only), so they map to
    the encoder by meaning: "attn" alone = attention; anything else = attention + MLP."""
    wanted = TEXT_LAYERS_ATTENTION if layer_filter == ["attn"] else TEXT_LAYERS_ATTENTION + TEXT_LAYERS_MLP
    return [name for name, module in encoder.named_modules()
            if isinstance(module, torch.nn.Linear) and name.endswith(wanted)]


def _add_adapter(module, targets: list[str], rank: int, alpha: float, dropout: float) -> dict:
    module.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                                  target_modules=targets, init_lora_weights=True))
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    for param in params.values():
        param.data = param.data.float()  # the adapter trains in float32 over any base dtype
    return params


def _part_rate(settings, part) -> float:
    return part.learning_rate if part.learning_rate is not None else settings.learning_rate


def _stop_after(part, steps_per_epoch: int, accumulation: int) -> int | None:
    """``stop_training_after`` in optimizer steps (EPOCH counts the epoch's batches)."""
    if part.stop_training_after_unit == "NEVER" or part.stop_training_after <= 0:
        return None
    batches = part.stop_training_after * (steps_per_epoch if part.stop_training_after_unit == "EPOCH" else 1)
    return max(1, batches // accumulation)


def _named_encoders(parts) -> list[tuple[str, torch.nn.Module]]:
    names = ("text_encoder", "text_encoder_2")
    return list(zip(names, parts.text_encoders))


def setup_lora(parts, settings, steps_per_epoch: int) -> list[TrainedGroup]:
    options, groups = settings.options, []
    torch.manual_seed(settings.seed)  # the same initial A matrices on every run
    accumulation = options.gradient_accumulation_steps
    unet_part = options.part("unet")
    if unet_part.train:
        params = _add_adapter(parts.unet, unet_lora_targets(parts.unet, options.layer_filter),
                              settings.lora_rank, settings.lora_alpha, options.lora_dropout)
        groups.append(TrainedGroup("unet", params, _part_rate(settings, unet_part),
                                   _stop_after(unet_part, steps_per_epoch, accumulation)))
    for name, encoder in _named_encoders(parts):
        part = options.part(name)
        if part.train:
            params = _add_adapter(encoder, text_lora_targets(encoder, options.layer_filter),
                                  settings.lora_rank, settings.lora_alpha, options.lora_dropout)
            groups.append(TrainedGroup(name, params, _part_rate(settings, part),
                                       _stop_after(part, steps_per_epoch, accumulation)))
    return groups


def setup_fine_tune(parts, settings, steps_per_epoch: int) -> list[TrainedGroup]:
    options, groups = settings.options, []
    modules = [("unet", parts.unet), *_named_encoders(parts)]
    for name, module in modules:
        part = options.part(name)
        if not part.train:
            continue
        module.float()  # master weights in float32 whatever the weight_dtype of frozen parts
        module.requires_grad_(True)
        groups.append(TrainedGroup(name, dict(module.named_parameters()), _part_rate(settings, part),
                                   _stop_after(part, steps_per_epoch, options.gradient_accumulation_steps)))
    return groups


def setup_embedding(parts, settings) -> tuple[list[TrainedGroup], EmbeddingTokens]:
    embedding = settings.options.embedding
    tokens = EmbeddingTokens(parts, embedding.placeholder, embedding.token_count,
                             embedding.initial_embedding_text)
    rate = embedding.learning_rate if embedding.learning_rate is not None else settings.learning_rate
    params = {f"vectors_{index}": vectors for index, vectors in enumerate(tokens.vectors)}
    return [TrainedGroup("embedding", params, rate)], tokens


def enable_gradient_checkpointing(parts, settings, groups: list[TrainedGroup]) -> list[str]:
    """Recompute activations in the backward pass for the trained parts that ask for it; returns
    the parts it was turned on for."""
    trained = {group.name for group in groups}
    turned_on = []
    options = settings.options
    if "unet" in trained or trained & {"text_encoder", "text_encoder_2", "embedding"}:
        if options.part("unet").gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
            turned_on.append("unet")
    for name, encoder in _named_encoders(parts):
        if (name in trained or "embedding" in trained) and options.part(name).gradient_checkpointing:
            encoder.gradient_checkpointing_enable()
            encoder.train()  # checkpointing only runs in train mode; the encoders have no dropout
            turned_on.append(name)
    return turned_on
