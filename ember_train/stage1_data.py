"""Stage 1 (vision-language alignment) data: an index of image-text pairs under caps, and the dataset and batches built on it.

A batch (`collate_stage1`) holds:
- `input_ids`, `attention_mask` (B, L): the image's `<|image|>` slots, the caption, end-of-text; right-padded.
- `pixel_values` (B, 3, S, S) and `has_image` (B,), all True: every sample has a decoded image.
- `labels` (B, L): the caption's and end-of-text's ids, -100 on image slots and padding: the
  captioning loss (`ember_train.stage_losses.next_token_loss`) on the LM logits of
  `EmberVLM.embed(input_ids, vision(pixel_values), has_image)`.
- `caption_input_ids`, `caption_attention_mask` (B, T): the caption and end-of-text alone, without the
  image: the text side of the contrastive loss (the LM's hidden states averaged over the mask, as
  `EmberVLM.card_embeddings` embeds a card), against the image's visual tokens averaged.
"""
from __future__ import annotations

import logging
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ember_core.processor import EmberProcessor, Features
from ember_train.data import DataError
from ember_train.image_text import (
    IGNORE_INDEX,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    UnusableSamples,
    image_ids,
    load_pixels,
    pad_rows,
    read_index,
    text_ids,
    write_index,
)
from ember_train.stage1_sources import Caption, Stage1Source

log = logging.getLogger("ember.train")

# The design's caps: each source at most 150,000 samples, Stage 1 at most 1,000,000.
PER_SOURCE_CAP = 150_000
TOTAL_CAP = 1_000_000
NO_TEXT = "no text"
INDEX_KIND = "ember.stage1-index/1"


@dataclass
class Stage1Index:
    """The image-text pairs Stage 1 trains on, and how many the sources listed were left out, per reason."""

    samples: list[Caption]
    skipped: dict[str, int]

    def save(self, path: str | os.PathLike) -> None:
        write_index(path, INDEX_KIND, [[s.image, s.text, s.source] for s in self.samples], self.skipped)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Stage1Index:
        rows, skipped = read_index(Path(path), INDEX_KIND)
        return cls([Caption(*row) for row in rows], skipped)


def build_stage1_index(sources: Sequence[Stage1Source], per_source_cap: int = PER_SOURCE_CAP,
                       total_cap: int = TOTAL_CAP, seed: int = 0) -> Stage1Index:
    """Read every source and keep samples whose image file exists, at most `per_source_cap` of each
    source and `total_cap` in all.

    A cap keeps a seeded random choice of samples (the same for the same seed and files), in file
    order. Images are checked only until a source's cap is filled, so capping a large export costs
    a file check per kept sample, not per line. Samples without text or with a missing image are
    counted per reason in `skipped`, with one warning per source.
    """
    if per_source_cap < 1 or total_cap < 1:
        raise ValueError(f"caps must be at least 1, got per_source_cap={per_source_cap}, total_cap={total_cap}")
    samples: list[Caption] = []
    skipped: Counter[str] = Counter()
    for source in sources:
        captions, without_text = source.read()
        kept, missing = _existing_sample(captions, per_source_cap, random.Random(f"{seed}:{source.name}"))
        skipped[NO_TEXT] += without_text
        skipped[MISSING_IMAGE] += len(missing)
        if missing:
            log.warning("%s: %d samples left out, their image file is missing (the first: %s)",
                        source.name, len(missing), missing[0])
        log.info("%s: %d samples of %d listed", source.name, len(kept), len(captions) + without_text)
        samples += kept
    if len(samples) > total_cap:
        log.info("Stage 1: %d samples, capped at %d", len(samples), total_cap)
        chosen = sorted(random.Random(f"{seed}:total").sample(range(len(samples)), total_cap))
        samples = [samples[i] for i in chosen]
    if not samples:
        raise DataError(f"no Stage 1 sample with an existing image in {', '.join(s.name for s in sources) or 'no source'}")
    return Stage1Index(samples, {reason: count for reason, count in skipped.items() if count})


def _existing_sample(captions: list[Caption], cap: int, rng: random.Random) -> tuple[list[Caption], list[str]]:
    """Up to `cap` captions whose image exists (a seeded choice when there are more), in their order;
    and the images found missing on the way."""
    order = list(range(len(captions)))
    if len(order) > cap:
        rng.shuffle(order)
    kept, missing, exists = [], [], {}
    for position in order:
        if len(kept) == cap:
            break
        image = captions[position].image
        if image not in exists:
            exists[image] = os.path.isfile(image)
        if exists[image]:
            kept.append(position)
        else:
            missing.append(image)
    return [captions[position] for position in sorted(kept)], missing


@dataclass
class CaptionItem:
    """One Stage 1 sample as model inputs: features (image slots, caption, end-of-text; pixels), labels, caption ids."""

    features: Features
    labels: torch.Tensor
    caption_ids: torch.Tensor


class Stage1Dataset(Dataset):
    """The samples of a Stage1Index as model inputs, each image decoded when its item is read.

    `max_tokens` is the language model's context: captions are cut to fit it with the image slots and
    end-of-text. An image that cannot be loaded is skipped (see `ember_train.image_text`);
    `unusable.summary()` says how many were, and why.
    """

    def __init__(self, index: Stage1Index, processor: EmberProcessor, max_tokens: int):
        if not index.samples:
            raise DataError("the Stage 1 index has no samples; build it from sources with existing images")
        self.samples = index.samples
        self.processor = processor
        self.image_ids = torch.tensor(image_ids(processor))
        self.max_caption_tokens = max_tokens - len(self.image_ids) - 1
        if self.max_caption_tokens < 1:
            raise ValueError(f"a context of {max_tokens} tokens leaves no room for a caption after "
                             f"{len(self.image_ids)} image tokens")
        self.unusable = UnusableSamples(len(self.samples), (MISSING_IMAGE, UNREADABLE_IMAGE), index.skipped,
                                        "Stage 1 data")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> CaptionItem:
        return self.unusable.first_usable(index, self._item)

    def _item(self, position: int) -> CaptionItem:
        sample = self.samples[position]
        pixels = load_pixels(self.processor, sample.image)
        words = text_ids(self.processor, sample.text)[: self.max_caption_tokens]
        caption = torch.tensor(words + [self.processor.tokenizer.eos_token_id])
        labels = torch.cat([torch.full_like(self.image_ids, IGNORE_INDEX), caption])
        return CaptionItem(Features(torch.cat([self.image_ids, caption]), pixels), labels, caption)


def collate_stage1(items: Sequence[CaptionItem], processor: EmberProcessor) -> dict[str, torch.Tensor]:
    """The processor's batch of the items' features, with labels and the captions alone (see the module's docstring)."""
    batch = processor.collate([item.features for item in items])
    batch["labels"] = pad_rows([item.labels for item in items], IGNORE_INDEX)
    batch["caption_input_ids"] = pad_rows([item.caption_ids for item in items], processor.tokenizer.pad_token_id)
    batch["caption_attention_mask"] = pad_rows([torch.ones_like(item.caption_ids) for item in items], 0)
    return batch
