"""Weights & Biases logging on the main process; a no-op logger everywhere else or when disabled."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("ember.train")
PROJECT = "embervlm"
MODES = ("online", "offline", "disabled")


class Tracker:
    """Logs scalars and plots (as images) to one W&B run per stage, named after the stage (`stage3_robot_selection`).

    Keys are grouped by split as the trainer and the stages name them: `train/` (loss and its parts,
    learning rate, speed), `val/` (validation metrics and plots), `test/` (the final evaluation).

    mode "disabled" or DISABLE_WANDB=1 make every call a no-op, so the training loop never branches
    on it. `run_id` is stored in checkpoints; a resumed run passes it back to continue the same W&B run.
    """

    def __init__(self, mode: str, directory: Path, run_name: str, config: Mapping[str, Any],
                 run_id: str | None = None):
        if mode not in MODES:
            raise ValueError(f"--wandb must be one of {', '.join(MODES)}, got {mode!r}")
        if os.environ.get("DISABLE_WANDB", "").strip().lower() in ("1", "true", "yes"):
            mode = "disabled"
        self.run = None
        if mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import and spawns a service

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=PROJECT, name=run_name, mode=mode, dir=str(directory), config=dict(config),
                              id=run_id, resume="allow" if run_id else None)
        log.info("W&B run %s (%s mode) in %s", self.run.id, mode, directory)

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    def log(self, values: Mapping[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def log_images(self, images: Mapping[str, Path], step: int) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path)) for key, path in images.items()}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
