"""Training checkpoints: the model files plus `training_state/`, written atomically; `latest` points at the newest."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember_core.atomic import atomic_directory, write_text_atomic
from ember_core.model.checkpoint import EmberModel

STATE_DIR = "training_state"
LATEST = "latest"


def save_checkpoint(bundle: EmberModel, stage_dir: Path, step: int, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> Path:
    """Write `stage_dir/checkpoint-{step}` (model + optimizer, scheduler, RNG and loop state).

    Nothing replaces a checkpoint until the new one is complete, and `latest` moves only then, so a
    crash mid-save leaves the previous checkpoint as the newest usable one.
    """
    target = stage_dir / f"checkpoint-{step}"
    with atomic_directory(target) as staging:
        bundle.write_files(staging)
        training = staging / STATE_DIR
        training.mkdir()
        torch.save(optimizer.state_dict(), training / "optimizer.pt")
        (training / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
        torch.save({"torch": torch.get_rng_state()}, training / "rng.pt")
        rng = {"python_random": _python_state(), "numpy_random": _numpy_state()}
        (training / "state.json").write_text(json.dumps({**state, "step": step, **rng}), encoding="utf-8")
    write_text_atomic(stage_dir / LATEST, target.name + "\n")
    return target


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The checkpoint `latest` names, if it exists."""
    pointer = stage_dir / LATEST
    if not pointer.is_file():
        return None
    path = stage_dir / pointer.read_text(encoding="utf-8").strip()
    return path if path.is_dir() else None


def load_training_state(checkpoint: Path, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; return the loop state (step, epoch, ...)."""
    training = checkpoint / STATE_DIR
    optimizer.load_state_dict(torch.load(training / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(json.loads((training / "scheduler.json").read_text(encoding="utf-8")))
    torch.set_rng_state(torch.load(training / "rng.pt", weights_only=True)["torch"])
    state = json.loads((training / "state.json").read_text(encoding="utf-8"))
    version, internal, gauss = state.pop("python_random")
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state.pop("numpy_random")
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    return state


def _numpy_state() -> list[Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
