"""Textual inversion: new tokens whose vectors train while every other weight stays frozen.

The placeholder (OneTrainer's ``embedding.placeholder``, "<embedding>") becomes ``token_count``
tokens named as diffusers' ``load_textual_inversion`` names them: placeholder, placeholder_1, ...
A caption's placeholder is expanded to all of them; a caption without it gets it in front (else
that image would not train the embedding at all). Each text encoder's token embedding is wrapped
so that the new ids read from a trainable ``vectors`` parameter: the big embedding matrix stays
frozen and backups hold only the vectors.
"""
from __future__ import annotations

import torch


class SplicedEmbedding(torch.nn.Module):
    """The frozen token embedding, except ids >= ``first_id``, which read ``vectors``."""

    def __init__(self, frozen: torch.nn.Embedding, first_id: int, vectors: torch.nn.Parameter):
        super().__init__()
        self.frozen, self.first_id, self.vectors = frozen, first_id, vectors

    @property
    def weight(self) -> torch.Tensor:  # some callers read the embedding's weight
        return self.frozen.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        new = ids >= self.first_id
        base = self.frozen(torch.where(new, torch.zeros_like(ids), ids))
        spliced = self.vectors[(ids - self.first_id).clamp(min=0, max=len(self.vectors) - 1)]
        return torch.where(new[..., None], spliced.to(base.dtype), base)


def token_names(placeholder: str, count: int) -> list[str]:
    return [placeholder] + [f"{placeholder}_{index}" for index in range(1, count)]


class EmbeddingTokens:
    def __init__(self, parts, placeholder: str, count: int, initial_text: str):
        self.placeholder, self.names = placeholder, token_names(placeholder, count)
        self.vectors: list[torch.nn.Parameter] = []
        self.warned = False
        for tokenizer, encoder in zip(parts.tokenizers, parts.text_encoders):
            self.vectors.append(self._add(tokenizer, encoder, initial_text, count))

    def _add(self, tokenizer, encoder, initial_text: str, count: int) -> torch.nn.Parameter:
        if any(name in tokenizer.get_vocab() for name in self.names):
            raise ValueError(f"the placeholder {self.placeholder} is already a token of the model: "
                             "choose another embedding.placeholder")
        frozen = encoder.get_input_embeddings()
        initial_ids = tokenizer(initial_text, add_special_tokens=False).input_ids or [tokenizer.unk_token_id]
        tokenizer.add_tokens(self.names)
        first_id = tokenizer.convert_tokens_to_ids(self.names[0])
        ids = [initial_ids[index % len(initial_ids)] for index in range(count)]
        start = frozen.weight.detach()[ids].float().clone()
        vectors = torch.nn.Parameter(start.to(frozen.weight.device))
        encoder.set_input_embeddings(SplicedEmbedding(frozen, first_id, vectors))
        return vectors

    def expand(self, caption: str) -> str:
        """The caption as the tokenizer must see it: the placeholder spelled as all its tokens."""
        if self.placeholder not in caption:
            caption = f"{self.placeholder} {caption}".strip()
        return caption.replace(self.placeholder, " ".join(self.names))
