"""Stage 2 (instruction tuning) data: LLaVA-Instruct conversations as token ids with labels on the assistant's turns only.

The file is LLaVA's: a JSON list of {"id", "image", "conversations": [{"from": "human" | "gpt",
"value": ...}, ...]} ("image" is optional: a conversation without one is text-only). Every turn is
read, in order, one a line, each its speaker (`User:` or `Assistant:`) and its text; an answer ends
with end-of-text.

An `<image>` tag in a human turn becomes the model's `<|image|>` slots where it stands; a
conversation without one gets them first, text-only conversations too (the model fills their slots
with its learned no-image vector, as for a Stage 3 request without a camera image, since every row
of a batch has the same number of slots). Only the assistant's answers and the end-of-text after
each carry labels; everything else is -100. A batch (`collate_stage2`) holds `input_ids`,
`attention_mask` and `labels` (B, L), and when any row has an image, `pixel_values` (B, 3, S, S)
with `has_image` (B,) (text-only rows: zeros and False).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from ember_core.processor import EmberProcessor, Features
from ember_core.prompt import IMAGE
from ember_train.data import DataError
from ember_train.image_text import (
    IGNORE_INDEX,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    Unusable,
    UnusableSamples,
    image_ids,
    load_pixels,
    pad_rows,
    read_index,
    read_json_file,
    text_ids,
    write_index,
)

log = logging.getLogger("ember.train")

HUMAN, ASSISTANT = "human", "gpt"
SPEAKERS = {HUMAN: "User:", ASSISTANT: "Assistant:"}
IMAGE_TAG = "<image>"
IMAGE_PAST_CONTEXT = "image past the context"
NO_ANSWER_IN_CONTEXT = "no answer within the context"
INDEX_KIND = "ember.stage2-index/1"


@dataclass(frozen=True)
class Conversation:
    """One Stage 2 sample: its id, the image file's path (None: text-only) and its (speaker, text) turns."""

    id: str
    image: str | None
    turns: tuple[tuple[str, str], ...]


@dataclass
class Stage2Index:
    """The conversations Stage 2 trains on, and how many were left out, per reason."""

    conversations: list[Conversation]
    skipped: dict[str, int]

    def save(self, path: str | os.PathLike) -> None:
        rows = [[c.id, c.image, [list(turn) for turn in c.turns]] for c in self.conversations]
        write_index(path, INDEX_KIND, rows, self.skipped)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Stage2Index:
        rows, skipped = read_index(Path(path), INDEX_KIND)
        return cls([Conversation(name, image, tuple(map(tuple, turns))) for name, image, turns in rows], skipped)


def build_stage2_index(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> Stage2Index:
    """The conversations of a LLaVA-Instruct JSON file, or of every *.json file in a folder, that have no
    image or one that exists (the others are counted and left out, with one warning per file).

    Image paths are relative to `image_root`, by default the JSON file's folder. DataError naming the
    file and record for a record that is not a conversation this loader can train on.
    """
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no *.json conversation file in this folder")
    conversations, missing = [], 0
    for file in files:
        records = read_json_file(file, "LLaVA-Instruct conversations (a JSON list)")
        if not isinstance(records, list):
            raise DataError(f"{file}: expected a JSON list of conversations, got {type(records).__name__}")
        root = Path(image_root) if image_root is not None else file.parent
        found = [_conversation(record, f"{file}[{number}]", root) for number, record in enumerate(records)]
        exists = {c.image: os.path.isfile(c.image) for c in found if c.image is not None}
        absent = [c.image for c in found if c.image is not None and not exists[c.image]]
        if absent:
            log.warning("%s: %d conversations left out, their image file is missing (the first: %s)",
                        file, len(absent), absent[0])
        conversations += [c for c in found if c.image is None or exists[c.image]]
        missing += len(absent)
    if not conversations:
        raise DataError(f"{path}: no conversation with an existing image; check the image root")
    return Stage2Index(conversations, {MISSING_IMAGE: missing} if missing else {})


def _conversation(record: Any, where: str, root: Path) -> Conversation:
    """A checked conversation record; DataError saying what is wrong with it otherwise."""
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: expected an object with a non-empty 'conversations' list")
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in SPEAKERS or not isinstance(turn.get("value"), str):
            raise DataError(f"{where}: conversations[{number}] must be {{\"from\": \"human\" or \"gpt\", "
                            f"\"value\": text}}")
        if turn["from"] == ASSISTANT and IMAGE_TAG in turn["value"]:
            raise DataError(f"{where}: conversations[{number}] is an answer with {IMAGE_TAG} in it; only human "
                            f"turns show the image")
    if not any(turn["from"] == ASSISTANT for turn in turns):
        raise DataError(f"{where}: no \"gpt\" turn, so nothing to learn; remove it or add the answer")
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise DataError(f"{where}: 'image' must be a path relative to the image root, got {image!r}")
    tags = sum(turn["value"].count(IMAGE_TAG) for turn in turns)
    if tags > (1 if image else 0):
        raise DataError(f"{where}: {tags} {IMAGE_TAG} tags for {'one image' if image else 'no image'}")
    return Conversation(str(record.get("id", where)), str(root / image) if image else None,
                        tuple((turn["from"], turn["value"]) for turn in turns))


def conversation_tokens(conversation: Conversation, processor: EmberProcessor) -> tuple[list[int], list[int]]:
    """The conversation's token ids and labels (its ids on answers and their end-of-text, -100 elsewhere)."""
    ids: list[int] = []
    labels: list[int] = []

    def add(tokens: list[int], learn: bool) -> None:
        ids.extend(tokens)
        labels.extend(tokens if learn else [IGNORE_INDEX] * len(tokens))

    if not any(IMAGE_TAG in value for _, value in conversation.turns):
        add(image_ids(processor), False)
    for number, (speaker, value) in enumerate(conversation.turns):
        add(text_ids(processor, ("\n" if number else "") + SPEAKERS[speaker]), False)
        if speaker == ASSISTANT:
            add(text_ids(processor, f" {value.strip()}") + [processor.tokenizer.eos_token_id], True)
            continue
        for part_number, part in enumerate(value.split(IMAGE_TAG)):
            if part_number:
                add(image_ids(processor), False)
            if part.strip():
                add(text_ids(processor, f" {part.strip()}"), False)
    return ids, labels


@dataclass
class ConversationItem:
    """One Stage 2 sample as model inputs: features (ids, pixels or None) and labels, as long as the ids."""

    features: Features
    labels: torch.Tensor


class Stage2Dataset(Dataset):
    """The conversations of a Stage2Index as model inputs, cut to `max_tokens` (the language model's
    context), each image decoded when its item is read.

    A conversation is skipped like an unreadable image (see `ember_train.image_text`) when the cut
    leaves some of its image slots out or no answer token in.
    """

    def __init__(self, index: Stage2Index, processor: EmberProcessor, max_tokens: int):
        if not index.conversations:
            raise DataError("the Stage 2 index has no conversations")
        self.conversations = index.conversations
        self.processor = processor
        self.max_tokens = max_tokens
        self.unusable = UnusableSamples(
            len(self.conversations), (MISSING_IMAGE, UNREADABLE_IMAGE, IMAGE_PAST_CONTEXT, NO_ANSWER_IN_CONTEXT),
            index.skipped, "Stage 2 data")

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index: int) -> ConversationItem:
        return self.unusable.first_usable(index, self._item)

    def _item(self, position: int) -> ConversationItem:
        conversation = self.conversations[position]
        ids, labels = conversation_tokens(conversation, self.processor)
        ids, labels = ids[: self.max_tokens], labels[: self.max_tokens]
        if ids.count(self.processor.token_id(IMAGE)) != self.processor.config.image_tokens:
            raise Unusable(IMAGE_PAST_CONTEXT, f"conversation {conversation.id}: its image slots end past the "
                                               f"{self.max_tokens}-token context")
        if all(label == IGNORE_INDEX for label in labels):
            raise Unusable(NO_ANSWER_IN_CONTEXT, f"conversation {conversation.id}: its first answer starts past the "
                                                 f"{self.max_tokens}-token context")
        pixels = load_pixels(self.processor, conversation.image) if conversation.image is not None else None
        return ConversationItem(Features(torch.tensor(ids), pixels), torch.tensor(labels))


def collate_stage2(items: Sequence[ConversationItem], processor: EmberProcessor) -> dict[str, torch.Tensor]:
    """The processor's batch of the items' features, with their labels padded with -100."""
    batch = processor.collate([item.features for item in items])
    batch["labels"] = pad_rows([item.labels for item in items], IGNORE_INDEX)
    return batch
