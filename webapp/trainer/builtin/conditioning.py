"""What the UNet is conditioned on: the text embeddings of each family, and SDXL's size ids.

SD 1.x/2.x: the text encoder's last hidden state. SDXL: both encoders' penultimate hidden states
side by side, the second encoder's pooled (projected) output, and six "time ids" per image
(original height and width, crop top and left, target height and width) as diffusers' SDXL
pipeline passes them, so that samples and training agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextConditions:
    embeds: torch.Tensor              # batch x tokens x width
    pooled: torch.Tensor | None = None  # SDXL: batch x projection width

    def to(self, device, dtype=None) -> "TextConditions":
        pooled = None if self.pooled is None else self.pooled.to(device, dtype)
        return TextConditions(self.embeds.to(device, dtype), pooled)

    def as_cache(self) -> dict[str, torch.Tensor]:
        value = {"embeds": self.embeds}
        if self.pooled is not None:
            value["pooled"] = self.pooled
        return value

    @classmethod
    def from_cache(cls, value) -> "TextConditions":
        if isinstance(value, torch.Tensor):  # a cache entry written before SDXL support
            return cls(value)
        return cls(value["embeds"], value.get("pooled"))

    @classmethod
    def stack(cls, items: list["TextConditions"]) -> "TextConditions":
        pooled = None if items[0].pooled is None else torch.stack([i.pooled for i in items])
        return cls(torch.stack([i.embeds for i in items]), pooled)

    def row(self, index: int) -> "TextConditions":
        return TextConditions(self.embeds[index],
                              None if self.pooled is None else self.pooled[index])


def token_ids(tokenizer, captions: list[str], device) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids.to(device)


def encode_captions(parts, captions: list[str], device) -> TextConditions:
    """The family's text conditions for ``captions`` (with grad when an encoder trains)."""
    if not parts.family.is_xl:
        return TextConditions(parts.text_encoder(token_ids(parts.tokenizer, captions, device))[0])
    hidden, pooled = [], None
    for tokenizer, encoder in zip(parts.tokenizers, parts.text_encoders):
        output = encoder(token_ids(tokenizer, captions, device), output_hidden_states=True)
        hidden.append(output.hidden_states[-2])
        pooled = output[0]  # the second encoder's (CLIPTextModelWithProjection) text_embeds
    return TextConditions(torch.cat(hidden, dim=-1), pooled)


def time_ids(original_hw: tuple[int, int], crop_top_left: tuple[int, int],
             target_hw: tuple[int, int]) -> torch.Tensor:
    return torch.tensor([*original_hw, *crop_top_left, *target_hw], dtype=torch.float32)


def unet_kwargs(parts, conditions: TextConditions, ids: torch.Tensor | None) -> dict:
    """The UNet's conditioning arguments besides the sample and the timestep."""
    if not parts.family.is_xl:
        return {"encoder_hidden_states": conditions.embeds}
    return {"encoder_hidden_states": conditions.embeds,
            "added_cond_kwargs": {"text_embeds": conditions.pooled, "time_ids": ids}}
