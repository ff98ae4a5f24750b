"""Saving and loading an EmberVLM with its tokenizer, fleet and calibration; shape-safe state loading."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from ember_core.atomic import atomic_directory
from ember_core.fleet import Fleet
from ember_core.model.config import CONFIG_FILE, EmberVLMConfig
from ember_core.model.prompt import card_phrases, card_text
from ember_core.model.tokenizer import load_tokenizer
from ember_core.model.vlm import EmberVLM
from ember_core.model.weights import load_state_dict_file
from ember_core.robot import RobotType

log = logging.getLogger("ember.model")
WEIGHTS_FILE = "model.safetensors"
# The trained model shipped inside the package (built by `make default-model`).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"
FLEET_FILE = "fleet.json"
CALIBRATION_FILE = "calibration.json"
# Tensors whose first dimension is one row per robot of the fleet.
ROBOT_ROWS = ("robot_head.mlp.6.weight", "robot_head.mlp.6.bias", "robot_head.known")
TASK_MEMORY = "robot_head.task_memory"


@dataclass
class EmberModel:
    """A model with everything needed to use it: tokenizer, the fleet its head is laid out for, calibration."""

    model: EmberVLM
    tokenizer: PreTrainedTokenizerBase
    fleet: Fleet
    temperature: float = 1.0
    name: str = "random-init"
    sha: str = "random-init"

    @classmethod
    def build(cls, config: EmberVLMConfig, fleet: Fleet) -> EmberModel:
        """A new model for `fleet`: random init, except parts whose config names pretrained weights.

        A pretrained language model brings its own tokenizer unless `config.tokenizer` names one.
        """
        source = config.tokenizer
        if source is None and config.language_model == "pretrained":
            source = config.lm_name_or_path
        tokenizer = load_tokenizer(source)
        bundle = cls(EmberVLM(config, fleet.num_robots, tokenizer), tokenizer, fleet, name=f"{config.preset} (random init)")
        bundle.refresh_cards()
        return bundle

    def refresh_cards(self) -> None:
        """Tokenise the fleet's capability cards into the model (after building or changing the fleet)."""
        encoded = self.tokenizer([card_text(robot) for robot in self.fleet], padding=True, return_tensors="pt")
        cards = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        phrases = [(index, phrase) for index, robot in enumerate(self.fleet) for phrase in card_phrases(robot)]
        text = self.task_inputs([phrase for _, phrase in phrases])
        if text:
            cards.update({"text_input_ids": text["input_ids"], "text_attention_mask": text["attention_mask"],
                          "text_owner": torch.tensor([index for index, _ in phrases])})
        self.model.set_cards(cards)

    def task_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Sentence-encoder token ids for task texts ({} when the model has no text encoder)."""
        encoder = self.model.text_encoder
        return {} if encoder is None else encoder.tokenize(texts)

    @torch.no_grad()
    def remember_tasks(self, tasks: list[str], batch_size: int = 64) -> None:
        """Keep the sentence embeddings of the tasks the head is trained on (they set its gate, see heads.py).

        A no-op for a model without a sentence encoder.
        """
        encoder = self.model.text_encoder
        if encoder is None or not tasks:
            return
        device, training = self.model.no_image.device, encoder.training
        encoder.eval()
        embeddings = [encoder(**{k: v.to(device) for k, v in encoder.tokenize(tasks[i:i + batch_size]).items()})
                      for i in range(0, len(tasks), batch_size)]
        encoder.train(training)
        self.model.robot_head.set_task_memory(torch.cat(embeddings))

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
        """Write config, weights, fleet, tokenizer and calibration; atomically replaces `directory`.

        `dtype=torch.float16` halves the weights file (the shipped model); loading casts back.
        """
        with atomic_directory(directory) as staging:
            self.write_files(staging, dtype)
        return Path(directory)

    def write_files(self, directory: Path, dtype: torch.dtype = torch.float32) -> None:
        """The files of a saved model, written into an existing (staging) directory."""
        self.model.config.save(directory)
        save_file(_stored_state(self.model, dtype), str(directory / WEIGHTS_FILE))
        fleet_record = {"ids": self.fleet.ids, "names": self.fleet.names, "hash": self.fleet.hash,
                        "robots": [robot.to_dict() for robot in self.fleet]}
        (directory / FLEET_FILE).write_text(json.dumps(fleet_record, indent=2) + "\n", encoding="utf-8")
        (directory / CALIBRATION_FILE).write_text(json.dumps({"temperature": self.temperature}) + "\n", encoding="utf-8")
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, fleet: Fleet | None = None) -> EmberModel:
        """Load a saved model. With `fleet`, the head is laid out for that fleet (rows matched by robot id)."""
        path = Path(directory)
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{path}: not an Ember model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        config = EmberVLMConfig.load(path)
        record = json.loads((path / FLEET_FILE).read_text(encoding="utf-8"))
        saved_fleet = Fleet([RobotType(**robot) for robot in record["robots"]])
        fleet = fleet or saved_fleet
        tokenizer = load_tokenizer(path)
        model = EmberVLM(config, fleet.num_robots, tokenizer)
        state = load_state_dict_file(path / WEIGHTS_FILE)
        if TASK_MEMORY in state:  # as many rows as the model had training tasks
            model.robot_head.set_task_memory(state[TASK_MEMORY])
        if fleet.ids != saved_fleet.ids:
            state = remap_robot_rows(state, model.state_dict(), saved_fleet.ids, fleet.ids)
        load_checkpoint(model, state)
        temperature = float(json.loads((path / CALIBRATION_FILE).read_text(encoding="utf-8"))["temperature"])
        bundle = cls(model, tokenizer, fleet, temperature, name=f"{config.preset}:{path.name}", sha=_file_sha(path / WEIGHTS_FILE))
        bundle.refresh_cards()
        model.eval()
        return bundle


def remap_robot_rows(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                     saved_ids: list[str], ids: list[str]) -> dict[str, torch.Tensor]:
    """Lay the per-robot rows of a checkpoint out for another fleet, matching robots by id.

    A robot the checkpoint knows keeps its trained row at its new index; a new robot keeps the
    fresh initialisation and is marked unknown, so the head scores it from its card alone.
    """
    added = [robot for robot in ids if robot not in saved_ids]
    removed = [robot for robot in saved_ids if robot not in ids]
    log.warning("Fleet differs from the checkpoint's: added %s, removed %s, order %s -> %s",
                added or "none", removed or "none", saved_ids, ids)
    if added:
        log.warning("New robot(s) %s are scored from their capability cards only until trained", added)
    state = dict(state)
    for key in ROBOT_ROWS:
        if key not in state:
            continue
        rows = fresh[key].clone()
        if key.endswith("known"):
            rows[:] = False
        for new_index, robot in enumerate(ids):
            if robot in saved_ids:
                rows[new_index] = state[key][saved_ids.index(robot)]
        state[key] = rows
    return state


def _stored_state(model: EmberVLM, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps: each tied tensor once, frozen pretrained parts left out."""
    stored, seen = {}, set()
    for key, tensor in model.state_dict().items():
        if key.startswith(model.external_prefixes) or (tensor.numel() and tensor.data_ptr() in seen):
            continue
        seen.add(tensor.data_ptr())
        tensor = tensor.detach().cpu()
        stored[key] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
    return stored


def load_checkpoint(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every tensor whose name and shape match; log and skip the rest (they keep their init).

    Returns the names of the skipped tensors. Never raises on a shape mismatch, so a Stage 2
    checkpoint loads into a Stage 3 model whose head has another size.
    """
    own = model.state_dict()
    matching, mismatched = {}, []
    for key, tensor in state.items():
        if key in own and own[key].shape == tensor.shape:
            matching[key] = tensor
        elif key in own:
            mismatched.append(f"{key}: checkpoint {tensor.shape} vs model {own[key].shape}")
    if mismatched:
        log.warning("Skipped %d mismatched layer(s) - will be randomly initialized:", len(mismatched))
        for line in mismatched:
            log.warning("  - %s", line)
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        log.warning("Ignored %d tensor(s) the model does not have: %s", len(unexpected), unexpected[:5])
    result = model.load_state_dict(matching, strict=False)
    loaded = {own[key].data_ptr() for key in matching}
    skipped = {line.split(":")[0] for line in mismatched}
    # A tied tensor (stored once) counts as loaded under its other name too; frozen pretrained parts
    # are not stored at all and come from their own source.
    external = getattr(model, "external_prefixes", ())
    missing = [key for key in result.missing_keys
               if key not in skipped and own[key].data_ptr() not in loaded and not key.startswith(external)]
    if missing:
        log.warning("%d tensor(s) not in the checkpoint keep their initialisation: %s", len(missing), missing[:5])
    return [line.split(":")[0] for line in mismatched]


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
