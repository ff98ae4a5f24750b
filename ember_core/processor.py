"""EmberProcessor: everything between raw input and model tensors, and from robot logits back to choices.

One processor serves inference (the Selector), training, evaluation and the metrics, so what a
user gets and what a report measures go through the same prompt, tokenisation, image transform,
padding, calibration and selection rule. It is saved next to the model (tokenizer files,
fleet.json, processor_config.json), so a checkpoint brings its own.

Its arrays are built with numpy and handed out as torch tensors (`return_tensors="pt"`, what training
takes) or as they are (`"np"`, what the Selector hands to either backend), so inference never needs torch
here: this module imports it only to make tensors.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ember_core.atomic import write_text_atomic
from ember_core.calibration import Calibration
from ember_core.fleet import Fleet
from ember_core.errors import InvalidInputError
from ember_core.images import ImageInput, to_pixels, to_rgb
from ember_core.model.structured import Walk
from ember_core.model.task_tokenizer import load_task_tokenizer, tokenize_tasks
from ember_core.model.text_tokenizer import TextTokenizer, pad_ids
from ember_core.model.tokenizer import load_tokenizer
from ember_core.prompt import (
    CARD_DETAILS,
    IMAGE,
    REASONING_START,
    card_phrases,
    card_text,
    decision_text,
    fleet_text,
    prompt_around_task,
)
from ember_core.fields import read_json
from ember_core.processor_files import fleet_from_record, processor_fields
from ember_core.text import clean_task

log = logging.getLogger("ember.model")
PROCESSOR_FILE = "processor_config.json"
FLEET_FILE = "fleet.json"
# Fewest task tokens the prompt must leave room for before the cards are shortened.
MIN_TASK_TOKENS = 96
Tensors = Literal["pt", "np"]  # torch tensors, or numpy arrays


@dataclass
class ProcessorConfig:
    """The processor's settings, stored as processor_config.json beside the model.

    `calibration` maps the robot head's logits to confidences (ember_core.calibration); training fits it.
    `max_prompt_tokens` is what the language model reads before it writes (its context less the reasoning
    and plan lengths and their markers); the fleet's cards and the task share it.
    `text_encoder`/`text_encoder_path` name the sentence encoder whose tokenizer encodes tasks (None: none).
    `image_slots` places the image in the prompt (ember_core.prompt.IMAGE_SLOTS); a file without it is of a
    model trained with the image first.
    """

    image_size: int
    image_tokens: int
    max_task_chars: int
    # Prompt tokens the language model can read and still write the reasoning and the plan in its context.
    max_prompt_tokens: int
    calibration: Calibration = dataclasses.field(default_factory=Calibration)
    text_encoder: str | None = None
    text_encoder_path: str | None = None
    image_slots: str = "after_cards"

    def save(self, directory: str | os.PathLike) -> None:
        """Write processor_config.json into `directory` (atomically: a reader never sees half a file)."""
        write_text_atomic(Path(directory) / PROCESSOR_FILE, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ProcessorConfig:
        """processor_config.json of a model directory, every field checked (ember_core.processor_files)."""
        path = Path(directory) / PROCESSOR_FILE
        data = read_json(path)
        try:
            return cls(**processor_fields(data, dataclasses.fields(cls)))
        except ValueError as err:
            raise ValueError(f"{path}: not a valid Ember processor config ({err}); fix it or re-save the model "
                             f"with save_pretrained") from None


@dataclass
class Features:
    """One request as model inputs before batching: prompt ids, optional pixels and task ids, training choices.

    The arrays are torch tensors or numpy arrays (see `return_tensors`); `collate` takes either.
    """

    input_ids: Any  # (L,)
    pixels: Any = None  # (3, S, S)
    task_input_ids: Any = None  # (T,) sentence-encoder ids
    # Training only: the explanation's decision points (position, candidate ids, their relevance, index of the one to choose).
    choices: list[tuple[int, list[int], list[float], int]] | None = None


class EmberProcessor:
    """Prompt and card text, tokenisation, task encoding, image transform, collation, calibration, selection rule."""

    def __init__(self, config: ProcessorConfig, tokenizer: TextTokenizer, fleet: Fleet,
                 task_tokenizer: TextTokenizer | None = None):
        if config.text_encoder and task_tokenizer is None:
            task_tokenizer = load_task_tokenizer(config.text_encoder, config.text_encoder_path)
        self.config, self.tokenizer, self.fleet, self.task_tokenizer = config, tokenizer, fleet, task_tokenizer
        self._fit_prompt()

    def _fit_prompt(self) -> None:
        """Encode the prompt around the task once, with as much of each card as leaves the task room."""
        # Room for the decision: the LM is fed the selected robots' names, at most all of them.
        decision = len(self.tokenizer(decision_text(self.fleet.ids, self.fleet))["input_ids"])
        for detail in CARD_DETAILS:
            before, after = prompt_around_task(fleet_text(self.fleet, detail), self.config.image_tokens,
                                               self.config.image_slots)
            self._before, self._after = self.tokenizer(before)["input_ids"], self.tokenizer(after)["input_ids"]
            self.max_task_tokens = self.config.max_prompt_tokens - len(self._before) - len(self._after) - decision
            if self.max_task_tokens >= MIN_TASK_TOKENS:
                break
        else:
            if self.max_task_tokens < 1:
                raise ValueError(f"a fleet of {len(self.fleet)} robots does not fit this model's prompt of "
                                 f"{self.config.max_prompt_tokens} tokens even as a list of names; use a model "
                                 f"with a longer context (lm_context) or fewer robots")
        self.card_detail = detail
        if detail != "full":
            log.warning("The fleet of %d robots does not fit the prompt with full cards; the language model reads "
                        "the cards' %s (tasks up to %d tokens). The robot head still scores every card phrase.",
                        len(self.fleet), detail, self.max_task_tokens)

    @property
    def prompt_before_task_ids(self) -> list[int]:
        """The prompt's ids before the task (the fleet's cards and the image slots): the same in every request."""
        return self._before

    @property
    def prompt_before_image_ids(self) -> list[int]:
        """The prompt's ids before the image slots (the fleet's cards): the same in every request of this fleet,
        whatever its image. Empty for a model that reads the image first."""
        image = self.token_id(IMAGE)
        return self._before[:self._before.index(image)] if image in self._before else self._before

    # ---- input -> tensors ----------------------------------------------------------------

    def clean_task(self, task: Any) -> str:
        """The request's task as the model reads it (see `ember_core.text.clean_task`); InvalidInputError if unusable."""
        return clean_task(task, self.config.max_task_chars)

    def pixels(self, image: ImageInput, return_tensors: Tensors = "pt") -> Any:
        """(3, S, S) normalised pixels of an image input, or None for no image."""
        rgb = to_rgb(image)
        return None if rgb is None else _as(to_pixels(rgb, self.config.image_size), return_tensors)

    def features(self, task: str, pixels: Any = None, return_tensors: Tensors = "pt") -> Features:
        """The prompt ids (and sentence-encoder ids) of a clean task, with the image's pixels.

        The task's own text is encoded with marker strings as plain text, so a task that contains
        `<|robot_selection|>` cannot move the model's selection point. InvalidInputError when the
        task is more tokens than the model's context leaves it.
        """
        task_ids = self.tokenizer(f" {task}", split_special_tokens=True)["input_ids"]
        if len(task_ids) > self.max_task_tokens:
            raise InvalidInputError(f"task is {len(task_ids)} tokens; this model reads at most {self.max_task_tokens} "
                                    f"with a fleet of {len(self.fleet)} robots; shorten it")
        input_ids = _as(np.array(self._before + task_ids + self._after, dtype=np.int64), return_tensors)
        sentence_ids = None
        if self.task_tokenizer is not None:
            sentence_ids = self.encode_tasks([task], return_tensors)["input_ids"][0]
        return Features(input_ids, pixels, sentence_ids)

    def with_explanation(self, features: Features, walk: Walk) -> Features:
        """Training features: the prompt, then a teacher-forced explanation walk (the decision and the
        explanation after it) with its decision points, the choices the decoder learns."""
        offset = len(features.input_ids)
        choices = [(offset + point.position, point.candidates, point.relevance, point.chosen) for point in walk.points]
        ids = np.concatenate([np.asarray(features.input_ids), np.asarray(walk.ids, dtype=np.int64)])
        return dataclasses.replace(features, input_ids=_as(ids, "pt"), choices=choices)

    def decision_ids(self, robots: Sequence[str]) -> list[int]:
        """The ids the LM is fed after the prompt at inference: the selected names, then `<|reasoning_start|>`."""
        return self.tokenizer(decision_text(list(robots), self.fleet))["input_ids"] + [self.token_id(REASONING_START)]

    def token_id(self, token: str) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(token))

    def encode_tasks(self, texts: list[str], return_tensors: Tensors = "pt") -> dict[str, Any]:
        """Sentence-encoder ids and mask of texts, padded to the longest ({} without a sentence encoder)."""
        if self.task_tokenizer is None:
            return {}
        return {name: _as(ids, return_tensors) for name, ids in tokenize_tasks(self.task_tokenizer, texts).items()}

    def collate(self, items: Sequence[Features], return_tensors: Tensors = "pt") -> dict[str, Any]:
        """Right-pad a batch: prompt ids (pad id), training choices, sentence-encoder ids (0, BERT's [PAD]).

        Rows without an image get zero pixels and `has_image` False (the model fills their image slots
        with its learned no-image vector); a batch without any image has no pixel entries at all.
        """
        batch = pad_ids([item.input_ids for item in items], self.tokenizer.pad_token_id)
        if items[0].choices is not None:
            batch.update(_choice_arrays([item.choices or [] for item in items]))
        if any(item.pixels is not None for item in items):
            size = self.config.image_size
            blank = np.zeros((3, size, size), dtype=np.float32)
            batch["pixel_values"] = np.stack([blank if item.pixels is None else np.asarray(item.pixels) for item in items])
            batch["has_image"] = np.array([item.pixels is not None for item in items])
        if items[0].task_input_ids is not None:
            task = pad_ids([item.task_input_ids for item in items], 0)
            batch["task_input_ids"], batch["task_attention_mask"] = task["input_ids"], task["attention_mask"]
        return {key: _as(value, return_tensors) for key, value in batch.items()}

    def card_inputs(self, return_tensors: Tensors = "pt") -> dict[str, Any]:
        """The fleet's cards as `EmberVLM.set_cards` takes them: card text ids, and with a sentence encoder
        every card phrase's ids with the index of the robot it belongs to."""
        encoded = self.tokenizer.batch([card_text(robot) for robot in self.fleet])
        cards = {name: _as(ids, return_tensors) for name, ids in encoded.items()}
        phrases = [(index, phrase) for index, robot in enumerate(self.fleet) for phrase in card_phrases(robot)]
        text = self.encode_tasks([phrase for _, phrase in phrases], return_tensors)
        if text:
            owner = np.array([index for index, _ in phrases], dtype=np.int64)
            cards.update({"text_input_ids": text["input_ids"], "text_attention_mask": text["attention_mask"],
                          "text_owner": _as(owner, return_tensors)})
        return cards

    # ---- logits -> choices ---------------------------------------------------------------

    def probabilities(self, robot_logits: Any) -> Any:
        """Calibrated per-robot confidences (ember_core.calibration), float32: numpy for numpy logits, a CPU
        tensor for a tensor."""
        return self.config.calibration.probabilities(robot_logits)

    # ---- saving and loading --------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write processor_config.json, fleet.json and the tokenizer files into `directory`."""
        directory = Path(directory)
        self.config.save(directory)
        record = {"ids": self.fleet.ids, "names": self.fleet.names, "hash": self.fleet.hash,
                  "robots": [robot.to_dict() for robot in self.fleet]}
        (directory / FLEET_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, fleet: Fleet | None = None,
                        task_tokenizer: TextTokenizer | None = None) -> EmberProcessor:
        """Load a saved processor; `fleet` replaces the saved one (a model used with another fleet)."""
        directory = Path(directory)
        return cls(ProcessorConfig.load(directory), load_tokenizer(directory), fleet or saved_fleet(directory),
                   task_tokenizer)


def saved_fleet(directory: str | os.PathLike) -> Fleet:
    """The fleet a model directory was saved with (fleet.json); ValueError naming the file and field if invalid."""
    path = Path(directory) / FLEET_FILE
    record = read_json(path)
    try:
        return fleet_from_record(record)
    except ValueError as err:
        raise ValueError(f"{path}: not a valid fleet record ({err}); re-save the model with save_pretrained") from None


def select_mask(probabilities: np.ndarray, threshold: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """The selection rule, (n, N) bool: the most probable eligible robot of each row, and every other
    eligible robot whose probability reaches `threshold`.

    So a row with any eligible robot always selects one. Ties for the first place go to the robot
    earlier in fleet order. `eligible` (default: all) leaves out robots that are vetoed, busy or offline.
    """
    probabilities = np.asarray(probabilities)
    eligible = np.ones(probabilities.shape, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    chosen = eligible & (probabilities >= threshold)
    masked = np.where(eligible, probabilities, -np.inf)
    rows = np.flatnonzero(eligible.any(axis=1))
    chosen[rows, masked[rows].argmax(axis=1)] = True
    return chosen


def _choice_arrays(rows: Sequence[Sequence[tuple[int, list[int], list[float], int]]]) -> dict[str, np.ndarray]:
    """The decision points of a batch, padded: positions (B, C), candidates (B, C, K) with candidate_mask
    and choice_relevance, targets (B, C) and choice_mask (B, C) marking real points."""
    points = max((len(row) for row in rows), default=0)
    width = max((len(candidates) for row in rows for _, candidates, _, _ in row), default=1)
    positions = np.zeros((len(rows), points), dtype=np.int64)
    candidates = np.zeros((len(rows), points, width), dtype=np.int64)
    relevance = np.zeros((len(rows), points, width), dtype=np.float32)
    candidate_mask = np.zeros((len(rows), points, width), dtype=bool)
    targets = np.zeros((len(rows), points), dtype=np.int64)
    choice_mask = np.zeros((len(rows), points), dtype=bool)
    for b, row in enumerate(rows):
        for c, (position, ids, scores, chosen) in enumerate(row):
            positions[b, c], targets[b, c], choice_mask[b, c] = position, chosen, True
            candidates[b, c, : len(ids)] = ids
            relevance[b, c, : len(ids)] = scores
            candidate_mask[b, c, : len(ids)] = True
    return {"choice_positions": positions, "choice_candidates": candidates, "choice_relevance": relevance,
            "candidate_mask": candidate_mask, "choice_targets": targets, "choice_mask": choice_mask}


def _as(array: np.ndarray, return_tensors: Tensors) -> Any:
    """A numpy array as it is ("np") or as a torch tensor sharing its memory ("pt")."""
    if return_tensors == "np":
        return array
    if return_tensors != "pt":
        raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
    import torch  # only here: inference hands numpy to its backend and never needs torch in this module

    return torch.from_numpy(array)
