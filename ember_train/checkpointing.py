"""Training checkpoints: the model files plus `training_state/`, written atomically; `latest` points at the newest.

`training_state/` holds what an exact resume needs: the optimizer (`optimizer.pt`), the scheduler
(`scheduler.json`), the random generators of every rank (`rng_state_rank{N}.pt`: each rank draws its
own stream, `ember_train.rng`), the loop's tensors that are not the model's (`trainer.pt`: the
objective's own parameters such as Stage 1's temperature, the best validation weights so far) and
`state.json` (step, data position, W&B run id, history).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ember_core.atomic import atomic_directory, write_text_atomic
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import write_pretrained
from ember_core.processor import EmberProcessor

log = logging.getLogger("ember.train")

STATE_DIR = "training_state"
LATEST = "latest"
PREFIX = "checkpoint-"


@dataclass
class TrainingState:
    """What `training_state/` holds, read back for a resume."""

    state: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    tensors: dict[str, Any]
    rng: dict[str, Any] | None  # this rank's generators (`ember_train.rng.rng_state`); None: the save had fewer ranks


def save_checkpoint(model: EmberVLM, processor: EmberProcessor, stage_dir: Path, step: int,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    state: dict[str, Any], rng_states: list[dict[str, Any]],
                    tensors: dict[str, Any] | None = None) -> Path:
    """Write `stage_dir/checkpoint-{step}` (model + optimizer, scheduler, `tensors`, loop `state` and
    `rng_states`, the generators of rank 0, 1, ... in that order).

    Nothing replaces a checkpoint until the new one is complete, and `latest` moves only then, so a
    crash mid-save leaves the previous checkpoint as the newest usable one.
    """
    target = checkpoint_dir(stage_dir, step)
    with atomic_directory(target) as staging:
        write_pretrained(model, processor, staging)
        training = staging / STATE_DIR
        training.mkdir()
        torch.save(optimizer.state_dict(), training / "optimizer.pt")
        (training / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
        for rank, rng in enumerate(rng_states):
            torch.save(rng, training / rng_file(rank))
        torch.save(tensors or {}, training / "trainer.pt")
        (training / "state.json").write_text(json.dumps({**state, "step": step}), encoding="utf-8")
    write_text_atomic(stage_dir / LATEST, target.name + "\n")
    return target


def load_training_state(checkpoint: Path, rank: int) -> TrainingState:
    """The `training_state/` of a checkpoint, with rank `rank`'s generators; FileNotFoundError naming the
    checkpoint when it has none."""
    training = Path(checkpoint) / STATE_DIR
    if not (training / "state.json").is_file():
        raise FileNotFoundError(f"{checkpoint} has no {STATE_DIR}/state.json: resume from a checkpoint-N directory "
                                "a training run wrote")
    rng = training / rng_file(rank)
    return TrainingState(state=json.loads((training / "state.json").read_text(encoding="utf-8")),
                         optimizer=torch.load(training / "optimizer.pt", weights_only=True),
                         scheduler=json.loads((training / "scheduler.json").read_text(encoding="utf-8")),
                         tensors=torch.load(training / "trainer.pt", weights_only=True),
                         rng=torch.load(rng, weights_only=True) if rng.is_file() else None)


def rng_file(rank: int) -> str:
    """The file in `training_state/` that holds rank `rank`'s random generators."""
    return f"rng_state_rank{rank}.pt"


def checkpoint_dir(stage_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` is (or will be) written."""
    return stage_dir / f"{PREFIX}{step}"


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint of a stage (the one `latest` names), None when it has none."""
    pointer = stage_dir / LATEST
    return stage_dir / pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def prune_checkpoints(stage_dir: Path, keep: int) -> None:
    """Delete the oldest checkpoints of a stage until `keep` are left; the one `latest` names always stays."""
    latest = latest_checkpoint(stage_dir)
    steps = sorted(int(path.name[len(PREFIX):]) for path in stage_dir.glob(f"{PREFIX}*")
                   if path.is_dir() and path.name[len(PREFIX):].isdigit())
    old = [checkpoint_dir(stage_dir, step) for step in steps[:max(0, len(steps) - keep)]]
    for path in old:
        if path != latest:
            log.info("Deleting %s (--save_total_limit %d)", path, keep)
            shutil.rmtree(path)
