"""What the Stage 1 and Stage 2 datasets share: token ids, lazy image loading that skips unusable samples, and indexes.

Missing and corrupt images are never replaced by a blank image. A file missing when the index is
built leaves its sample out of the index (counted per reason). A sample that turns out unusable when
it is loaded (an image that does not decode, a file deleted since indexing, a conversation whose
image or answer falls outside the context) is marked in `UnusableSamples`, logged once with its
reason, and its index is served by the next usable sample in index order: which sample that is
depends only on the data, so runs and ranks agree. The marks live in shared memory, so what
DataLoader workers find shows in the main process's summary.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

import torch

from ember_core.atomic import write_text_atomic
from ember_core.errors import InvalidInputError
from ember_core.processor import EmberProcessor
from ember_core.prompt import IMAGE
from ember_train.data import DataError

log = logging.getLogger("ember.train")

MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
IGNORE_INDEX = -100  # labels the language-modelling loss skips (torch's cross_entropy default)

Item = TypeVar("Item")


class Unusable(Exception):
    """A sample that cannot be trained on; `reason` is the summary's category, the message says which file and why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def image_ids(processor: EmberProcessor) -> list[int]:
    """The `<|image|>` ids the model fills with an image's visual tokens, as many as it has."""
    return [processor.token_id(IMAGE)] * processor.config.image_tokens


def text_ids(processor: EmberProcessor, text: str) -> list[int]:
    """Token ids of data text, with marker strings in it encoded as plain text (as the processor encodes tasks)
    and no begin/end tokens of the tokenizer's own, since pieces of text are joined."""
    return processor.tokenizer(text, split_special_tokens=True, add_special_tokens=False)["input_ids"]


def load_pixels(processor: EmberProcessor, path: str) -> torch.Tensor:
    """The processor's (3, S, S) pixels of an image file; Unusable when it is missing or does not decode."""
    try:
        return processor.pixels(path)
    except InvalidInputError as err:
        reason = UNREADABLE_IMAGE if os.path.isfile(path) else MISSING_IMAGE
        raise Unusable(reason, str(err)) from None


def pad_rows(rows: Sequence[torch.Tensor], value: int) -> torch.Tensor:
    """1-d id tensors right-padded with `value` into one (B, L) tensor."""
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=value)


class UnusableSamples:
    """Which samples of a dataset could not be loaded and why, in memory shared with DataLoader workers.

    `index_skips` are the samples the index left out (reason -> count); `counts` adds those found at load time.
    """

    def __init__(self, size: int, reasons: Sequence[str], index_skips: dict[str, int], what: str):
        self.reasons = tuple(reasons)
        self.index_skips = dict(index_skips)
        self.what = what
        self.size = size
        # 0: not marked; k: unusable for reasons[k - 1].
        self.marks = torch.zeros(size, dtype=torch.int8).share_memory_()

    def first_usable(self, index: int, load: Callable[[int], Item]) -> Item:
        """load(i) for the first sample i at or after `index` (wrapping around) that loads; `load` raises
        Unusable for one that does not, which is marked and logged and never tried again."""
        for step in range(self.size):
            position = (index + step) % self.size
            if self.marks[position]:
                continue
            try:
                return load(position)
            except Unusable as err:
                self.marks[position] = self.reasons.index(err.reason) + 1
                log.warning("%s: skipping sample %d (%s): %s; its place is taken by the next usable sample",
                            self.what, position, err.reason, err)
        raise DataError(f"{self.what}: none of its {self.size} samples can be loaded ({self.summary()}); "
                        f"check that the image paths point at the image files")

    def merge(self, reduce_max: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Take in the marks of other processes: `reduce_max` returns a tensor's elementwise maximum over them
        (under torch.distributed, over every rank, each of which loaded its own shard), so `counts` covers the run."""
        self.marks.copy_(reduce_max(self.marks.int()).to(self.marks.dtype))

    def counts(self) -> dict[str, int]:
        """Samples skipped per reason: left out of the index, and marked at load time so far."""
        counts = Counter(self.index_skips)
        marked = torch.bincount(self.marks.long(), minlength=len(self.reasons) + 1).tolist()
        for reason, count in zip(self.reasons, marked[1:]):
            counts[reason] += count
        return {reason: count for reason, count in counts.items() if count}

    def summary(self) -> str:
        """One line for the log, e.g. "2 samples skipped: 1 missing image, 1 unreadable image"."""
        counts = self.counts()
        if not counts:
            return "no sample skipped"
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
        return f"{sum(counts.values())} samples skipped: {parts}"


class SavedIndex(Protocol):
    def save(self, path: str | os.PathLike) -> None: ...


Index = TypeVar("Index", bound=SavedIndex)


def shared_index(path: str | os.PathLike, build: Callable[[], Index], load: Callable[[Path], Index],
                 is_main: bool = True, barrier: Callable[[], None] = lambda: None) -> Index:
    """An index built once: the main process builds it and writes `path`, then every process passes
    `barrier` and the others read the file.

    Under torch.distributed pass `is_main=dist.get_rank() == 0` and `barrier=dist.barrier` (with nodes
    that share no disk, each node's local rank 0 builds its own copy).
    """
    index = None
    if is_main:
        index = build()
        index.save(path)
    barrier()
    return index if index is not None else load(Path(path))


def read_json_file(path: Path, what: str) -> Any:
    """The JSON document in a data file; DataError naming the file when it is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; point at the {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); it should be the {what}") from None


def write_index(path: str | os.PathLike, kind: str, rows: list[Any], skipped: dict[str, int]) -> None:
    """Write an index file: its kind, the samples as JSON rows, and the samples left out per reason."""
    write_text_atomic(path, json.dumps({"kind": kind, "skipped": skipped, "samples": rows}))


def read_index(path: Path, kind: str) -> tuple[list[Any], dict[str, int]]:
    """The rows and skip counts of an index file written by `write_index` for `kind`."""
    data = read_json_file(path, f"{kind} index written by rank 0")
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise DataError(f"{path}: not a {kind} index; delete it so that it is built again")
    return data["samples"], data["skipped"]
