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
    """Logs scalars under `stage{N}/...` and plots as images to one W&B run.

    mode "disabled" or DISABLE_WANDB=1 make every call a no-op, so the training loop never branches
    on it. `run_id` is stored in checkpoints, for a resumed run to continue the same W&B run.
    """

    def __init__(self, mode: str, directory: Path, run_name: str, config: Mapping[str, Any]):
        if mode not in MODES:
            raise ValueError(f"--wandb must be one of {', '.join(MODES)}, got {mode!r}")
        if os.environ.get("DISABLE_WANDB", "").strip().lower() in ("1", "true", "yes"):
            mode = "disabled"
        self.run = None
        if mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import and spawns a service

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=PROJECT, name=run_name, mode=mode, dir=str(directory), config=dict(config))
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
