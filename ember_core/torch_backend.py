"""The torch backend: an EmberVLM on a torch device (bfloat16 autocast on CUDA) behind the Selector."""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from ember_core.backend import Outputs
from ember_core.fleet import Fleet
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import load_pretrained, resolve_device
from ember_core.processor import EmberProcessor
from ember_core.relevance import PhraseRelevance


class TorchBackend:
    """An EmberVLM and its processor on `device`; numpy in and out (see ember_core.backend)."""

    def __init__(self, model: EmberVLM, processor: EmberProcessor, device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        self.model, self.processor, self.config = model, processor, model.config
        self.name, self.sha = model.name, model.sha
        self.relevance = PhraseRelevance(model, processor)
        self.model.to(self.device).eval()
        with torch.no_grad():  # embed the cards (hundreds of phrases) now, not in the first request's latency
            self.model.card_embeddings()

    @classmethod
    def load(cls, model: str | os.PathLike | tuple[EmberVLM, EmberProcessor] | None, fleet: Fleet,
             device: str = "auto") -> TorchBackend:
        """A (model, processor) pair as it is, else `load_pretrained(model, fleet)`."""
        device = resolve_device(device)  # a wrong device name fails before the model loads
        return cls(*(model if isinstance(model, tuple) else load_pretrained(model, fleet)), device)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def forward(self, batch: dict[str, np.ndarray], use_cache: bool = False) -> Outputs:
        tensors = {key: torch.from_numpy(value).to(self.device) for key, value in batch.items()}
        with self._autocast():
            outputs = self.model(**tensors, use_cache=use_cache)
        return Outputs(robot_logits=_numpy(outputs["robot_logits"]), scene_logits=_numpy(outputs.get("scene_logits")),
                       task_embedding=_numpy(outputs.get("task_embedding")), cache=outputs.get("cache"),
                       familiarity=_numpy(outputs.get("familiarity")))

    def feed(self, ids: list[int], cache: Any) -> torch.Tensor:
        with self._autocast():
            return self.model.feed(ids, cache)

    @torch.no_grad()
    def token_scores(self, hidden: torch.Tensor, candidates: list[int], relevance: list[float]) -> torch.Tensor:
        with self._autocast():
            return self.model.token_scores(hidden, candidates, relevance)


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.float().cpu().numpy()
