"""Training checkpoints: the model files plus `training_state/`, written atomically; `latest` points at the newest."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember_core.atomic import atomic_directory, write_text_atomic
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import write_pretrained
from ember_core.processor import EmberProcessor

STATE_DIR = "training_state"
LATEST = "latest"


def save_checkpoint(model: EmberVLM, processor: EmberProcessor, stage_dir: Path, step: int,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    state: dict[str, Any]) -> Path:
    """Write `stage_dir/checkpoint-{step}` (model + optimizer, scheduler, RNG and loop state).

    Nothing replaces a checkpoint until the new one is complete, and `latest` moves only then, so a
    crash mid-save leaves the previous checkpoint as the newest usable one. Nothing reads
    `training_state/` back yet: there is no resume.
    """
    target = checkpoint_dir(stage_dir, step)
    with atomic_directory(target) as staging:
        write_pretrained(model, processor, staging)
        training = staging / STATE_DIR
        training.mkdir()
        torch.save(optimizer.state_dict(), training / "optimizer.pt")
        (training / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
        torch.save({"torch": torch.get_rng_state()}, training / "rng.pt")
        rng = {"python_random": _python_state(), "numpy_random": _numpy_state()}
        (training / "state.json").write_text(json.dumps({**state, "step": step, **rng}), encoding="utf-8")
    write_text_atomic(stage_dir / LATEST, target.name + "\n")
    return target


def checkpoint_dir(stage_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` is (or will be) written."""
    return stage_dir / f"checkpoint-{step}"


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint of a stage (the one `latest` names), None when it has none."""
    pointer = stage_dir / LATEST
    return stage_dir / pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def _numpy_state() -> list[Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
