"""ServeSettings: what `ember serve` runs with; the one home of its flags, and how worker processes receive them."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from ember_core.backend import BACKENDS
from ember_core.options import option
from ember_core.robots_file import ENV_VAR

# uvicorn starts each worker process from an import string, so the settings travel in the environment.
SETTINGS_ENV_VAR = "EMBER_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """The model and fleet to serve, and where to listen; every field is an `ember serve` flag."""

    model: str | None = option(None, "model directory written by save_pretrained or `ember export onnx` (None: the model shipped with Ember)")
    robots: str | None = option(None, f"robots.yaml to load (None: ${ENV_VAR}, ./robots.yaml, then the installed default)")
    backend: str | None = option(None, "inference backend (None: onnx for a directory written by `ember export onnx`, "
                                       "torch for any other)", choices=BACKENDS)
    device: str = option("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1 ...")
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 listens on every interface (there is no authentication: see the README)")
    port: int = option(8000, "TCP port to listen on")
    workers: int = option(1, "server processes; each loads its own copy of the model")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be from 0 to 65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")

    def to_environment(self) -> None:
        """Hand these settings to the worker processes uvicorn is about to start."""
        os.environ[SETTINGS_ENV_VAR] = json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> ServeSettings:
        """The settings `to_environment` handed over; KeyError when this process was not started by `ember serve`."""
        return cls(**json.loads(os.environ[SETTINGS_ENV_VAR]))
