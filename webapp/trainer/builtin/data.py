"""The training data of a run: samples, epochs of single-bucket batches, and their tensors.

A sample is an item at one of the config's resolutions (each item trains at each of them), put
in that resolution's aspect-ratio bucket. An epoch is a pure function of (seed, epoch): the
balanced items, grouped by bucket, shuffled, cut into batches (never mixing buckets; a bucket's
incomplete last batch is dropped, unless no bucket fills a batch), the batches shuffled. So a
resumed run sees the same order for the rest of its epoch without any saved data-RNG state.

Augmentations and captions come in variants: variant v of an image (or caption) is drawn from a
Random seeded by (concept seed, file, v). With latent caching an epoch e uses variant
e % image_variations (text: e % text_variations), each encoded once into the cache; without
it, variant e: fresh every epoch, encoded at every step.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from webapp.trainer.builtin import buckets, concepts
from webapp.trainer.builtin.cache import LATENTS, TEXTS, DiskCache
from webapp.trainer.builtin.captions import render_caption
from webapp.trainer.builtin.conditioning import TextConditions, encode_captions, time_ids
from webapp.trainer.builtin.images import Augment, crop_origin, draw_augment, load_pixels

STATUS_EVERY_S = 0.25


@dataclass(frozen=True)
class Sample:
    item: int
    resolution: int
    bucket: tuple[int, int]


class TrainingData:
    def __init__(self, settings, items: list, parts, device, cache: DiskCache | None,
                 batch_size: int | None = None):
        self.settings, self.items, self.parts, self.device = settings, items, parts, device
        # the global batch with several ranks (each trains a slice of it)
        self.batch_size = batch_size or settings.batch_size
        self.concepts, self.cache = settings.concepts, cache
        self.samples = [Sample(index, res, buckets.assign(item.width, item.height, res,
                                                          settings.aspect_ratio_bucketing))
                        for index, item in enumerate(items) for res in settings.resolutions]
        self._by_item: dict[int, list[int]] = {}
        for index, sample in enumerate(self.samples):
            self._by_item.setdefault(sample.item, []).append(index)
        self.latents: dict[str, torch.Tensor] = {}
        self.embeddings: dict[str, TextConditions] = {}
        self._latent_keys: dict[tuple[int, int], str] = {}
        # the captions' embeddings are cached only while no text encoder (or embedding) trains
        self.cache_texts = cache is not None and not settings.texts_train
        self.expand_caption = lambda caption: caption  # textual inversion spells its placeholder out

    # -- order --
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.settings.seed}:epoch:{epoch}")
        chosen = [s for i in concepts.epoch_items(self.items, self.concepts, rng) for s in self._by_item[i]]
        groups: dict[tuple, list[int]] = {}
        for index in chosen:
            groups.setdefault(self.samples[index].bucket, []).append(index)
        size, batches, leftovers = self.batch_size, [], []
        for bucket in sorted(groups):
            members = groups[bucket]
            rng.shuffle(members)
            whole = len(members) // size * size
            batches += [members[i:i + size] for i in range(0, whole, size)]
            if whole < len(members):
                leftovers.append(members[whole:])
        if not batches:
            batches = leftovers
        rng.shuffle(batches)
        return batches

    # -- variants --
    def _variant(self, epoch: int, count: int) -> int:
        return epoch % count if self.cache is not None else epoch

    def augment(self, sample: Sample, epoch: int) -> Augment:
        item = self.items[sample.item]
        concept = self.concepts[item.concept_index]
        variant = self._variant(epoch, concept.image_variations)
        return draw_augment(concept, random.Random(f"{concept.seed}:{item.image_path}:{sample.resolution}:image:{variant}"))

    def caption(self, item_index: int, epoch: int) -> str:
        item = self.items[item_index]
        concept = self.concepts[item.concept_index]
        variant = self._variant(epoch, concept.text_variations)
        rng = random.Random(f"{concept.seed}:{item.image_path}:text:{variant}")
        return self.expand_caption(render_caption(item.captions, concept, self.settings.caption_dropout, rng))

    # -- tensors --
    @torch.no_grad()
    def encode_latent(self, sample: Sample, augment: Augment) -> torch.Tensor:
        vae = self.parts.vae
        item = self.items[sample.item]
        pixels = load_pixels(item.image_path, sample.bucket, augment, item.roots)
        latent = vae.encode(pixels[None].to(self.device, vae.dtype)).latent_dist.mean
        return latent[0].float() * vae.config.scaling_factor

    def encode_captions(self, captions: list[str]) -> TextConditions:
        return encode_captions(self.parts, captions, self.device)

    def size_ids(self, sample: Sample, augment: Augment) -> torch.Tensor:
        """SDXL's time ids: the source image's size, where the crop sits, the bucket's size."""
        item = self.items[sample.item]
        width, height = sample.bucket
        top, left = crop_origin((item.width, item.height), sample.bucket, augment)
        return time_ids((item.height, item.width), (top, left), (height, width))

    def batch(self, indices: list[int], epoch: int):
        """(latents, text, time ids or None, loss weights) of one batch, on the device; text is
        TextConditions when cached, else the captions (encoded by the caller, with grad when a
        text encoder trains)."""
        samples = [self.samples[i] for i in indices]
        captions = [self.caption(s.item, epoch) for s in samples]
        needs_augments = self.cache is None or self.parts.family.is_xl  # pixels, or SDXL's crop ids
        augments = [self.augment(s, epoch) for s in samples] if needs_augments else []
        if self.cache is None:
            latents = torch.stack([self.encode_latent(s, a) for s, a in zip(samples, augments)])
        else:
            latents = torch.stack([self.latents[self._latent_key(i, epoch)] for i in indices])
        if self.cache_texts:
            text = TextConditions.stack([self.embeddings[self.cache.text_key(c)] for c in captions])
            text = text.to(self.device)
        else:
            text = captions
        ids = None
        if self.parts.family.is_xl:
            ids = torch.stack([self.size_ids(s, a) for s, a in zip(samples, augments)]).to(self.device)
        weights = torch.tensor([self.concepts[self.items[s.item].concept_index].loss_weight
                                for s in samples], dtype=torch.float32)
        return latents.to(self.device), text, ids, weights.to(self.device)

    def _latent_key(self, index: int, epoch: int) -> str:
        """The cache key of sample ``index``'s latent in this epoch, worked out once per variant
        (it hashes the file's path and stats: too slow to do for every sample of every step)."""
        sample = self.samples[index]
        concept = self.concepts[self.items[sample.item].concept_index]
        memo = (index, self._variant(epoch, concept.image_variations))
        key = self._latent_keys.get(memo)
        if key is None:
            key = self.cache.latent_key(self.items[sample.item], sample.bucket,
                                        self.augment(sample, epoch).key())
            self._latent_keys[memo] = key
        return key

    # -- the cache --
    def fill_cache(self, status, should_stop) -> bool:
        """Every variant's latent and every caption's embedding, from disk or encoded (and
        stored); False when ``should_stop()`` turned true (asked before each entry)."""
        jobs = []
        for sample in self.samples:
            count = self.concepts[self.items[sample.item].concept_index].image_variations
            jobs += [(LATENTS, sample, epoch) for epoch in range(count)]
        for index, item in enumerate(self.items) if self.cache_texts else ():
            count = self.concepts[item.concept_index].text_variations
            jobs += [(TEXTS, index, epoch) for epoch in range(count)]
        last = 0.0
        for done, (kind, what, epoch) in enumerate(jobs):
            if should_stop():
                return False
            if time.monotonic() - last >= STATUS_EVERY_S:
                status(f"caching {done}/{len(jobs)}")
                last = time.monotonic()
            if kind == LATENTS:
                self._cache_latent(what, epoch)
            else:
                self._cache_text(self.caption(what, epoch))
        status(f"caching {len(jobs)}/{len(jobs)}")
        return True

    def _cache_latent(self, sample: Sample, epoch: int) -> None:
        augment = self.augment(sample, epoch)
        key = self.cache.latent_key(self.items[sample.item], sample.bucket, augment.key())
        if key in self.latents:
            return
        value = self.cache.load(LATENTS, key)
        if value is None:
            value = self.encode_latent(sample, augment).float().cpu()
            self.cache.store(LATENTS, key, value)
        self.latents[key] = value

    def _cache_text(self, caption: str) -> None:
        key = self.cache.text_key(caption)
        if key in self.embeddings:
            return
        value = self.cache.load(TEXTS, key)
        if value is None:
            with torch.no_grad():
                encoded = self.encode_captions([caption]).row(0)
            value = {name: tensor.float().cpu() for name, tensor in encoded.as_cache().items()}
            self.cache.store(TEXTS, key, value)
        self.embeddings[key] = TextConditions.from_cache(value)
