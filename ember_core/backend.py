"""The model behind the Selector: torch (ember_core.torch_backend) or onnxruntime (ember_core.onnx_backend).

Both take the processor's numpy batch and give numpy outputs, so the Selector runs the same steps on
either; the onnxruntime backend never imports torch. A model directory written by `ember export onnx`
(it has manifest.json) selects onnxruntime, any other one torch, unless `backend` names one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ember_core.extras import ONNX_INSTEAD, missing_extra
from ember_core.onnx_layout import MANIFEST_FILE

if TYPE_CHECKING:  # the command line reads BACKENDS before deciding to load a model
    from ember_core.fleet import Fleet
    from ember_core.model.config import EmberVLMConfig
    from ember_core.processor import EmberProcessor
    from ember_core.relevance import PhraseRelevance

BACKENDS = ("torch", "onnx")


@dataclass
class Outputs:
    """One forward pass over a batch, as numpy arrays."""

    robot_logits: np.ndarray  # (B, N)
    scene_logits: np.ndarray | None = None  # (B, tags): with pixels and a scene head
    task_embedding: np.ndarray | None = None  # (B, D): with a sentence encoder
    cache: Any = None  # with use_cache: the prompt's key/values, which `feed` extends
    familiarity: np.ndarray | None = None  # (B,): with a sentence encoder (RobotHead.familiarity)


class Backend(Protocol):
    """What the Selector runs: a forward pass over a batch, and the explanation decoder's two steps."""

    model: Any  # the EmberVLM, or the onnxruntime sessions
    processor: EmberProcessor
    config: EmberVLMConfig
    relevance: PhraseRelevance
    name: str
    sha: str
    device: Any

    def forward(self, batch: dict[str, np.ndarray], use_cache: bool = False) -> Outputs:
        """The robot logits (and scene logits, task embeddings, cache) of a batch `processor.collate` made."""

    def feed(self, ids: list[int], cache: Any) -> Any:
        """Run the LM on ids after the cache (extended in place); the last position's hidden state."""

    def token_scores(self, hidden: Any, candidates: list[int], relevance: list[float]) -> Any:
        """Scores (K,) of candidate tokens after a hidden state (see `EmberVLM.token_scores`)."""


def load_backend(model: Any, fleet: Fleet, backend: str | None = None, device: str = "auto") -> Backend:
    """The backend for `model` (a directory, None for the shipped model, or a torch (model, processor) pair),
    laid out for `fleet`. ValueError when `backend` does not fit the model: a torch pair or a checkpoint
    for onnx, an export for torch."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    exported = not isinstance(model, tuple) and model is not None and (Path(model) / MANIFEST_FILE).is_file()
    if (backend or ("onnx" if exported else "torch")) == "onnx":
        if not exported:
            where = "a model given as a (model, processor) pair" if isinstance(model, tuple) else f"{model!r}"
            raise ValueError(f"the onnx backend needs a directory written by `ember export onnx` (with {MANIFEST_FILE}); "
                             f"{where} is not one: export it first, or use the torch backend")
        from ember_core.onnx_backend import OnnxBackend  # onnxruntime loads only for an export

        return OnnxBackend.load(Path(model), fleet, device)
    if exported:
        raise ValueError(f"{os.fspath(model)} is an ONNX export ({MANIFEST_FILE}); use the onnx backend, or pass the "
                         f"model directory it was exported from")
    try:
        from ember_core.torch_backend import TorchBackend  # torch loads only for the torch backend
    except ModuleNotFoundError as err:
        what = "the torch backend" + (" (the shipped model runs on it unless exported)" if model is None else "")
        missing = missing_extra(err, what, ONNX_INSTEAD)
        if missing is None:
            raise
        raise missing from None
    return TorchBackend.load(model, fleet, device)
