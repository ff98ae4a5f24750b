"""Stage 3's explanation phase: train the explanation adapter alone, so the robot scores do not move.

Every other parameter is frozen and runs in eval mode (no dropout), so the language model's hidden
states, and with them the robot head's inputs and outputs, are exactly those of the selection phase.
The loss is the cross-entropy of the decoder's choices among its candidates (`ember_train.losses.choice_loss`).
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ember_core.model.vlm import EmberVLM
from ember_core.processor import EmberProcessor
from ember_core.model.structured import Relevance
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord
from ember_train.losses import choice_loss
from ember_train.plots import plot_losses

log = logging.getLogger("ember.train")


def train_explanation(model: EmberVLM, processor: EmberProcessor, train: list[TaskRecord], val: list[TaskRecord],
                      epochs: int, learning_rate: float, batch_size: int, image_dropout: float, seed: int,
                      device: torch.device, plot_path: Path | None,
                      relevance: Callable[[str], Relevance]) -> list[dict[str, float]]:
    """Train `model.explanation_adapter` for `epochs`; returns the loss history and writes its plot (unless
    `plot_path` is None: under torch.distributed every rank trains it alike and rank 0 plots).

    `relevance` gives, for a task text, the relevance of card phrases to it (the selection phase's, whose
    embeddings of the training tasks it has cached)."""
    scene_tags = model.config.scene_tags
    data = SelectionDataset(train, processor, scene_tags, image_dropout=image_dropout, seed=seed, relevance=relevance)
    held_out = SelectionDataset(val, processor, scene_tags, image_dropout=image_dropout, seed=seed, relevance=relevance)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator,
                        collate_fn=partial(collate, processor=processor))
    was_trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(False).eval()
    adapter = model.explanation_adapter.requires_grad_(True)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=learning_rate, weight_decay=0.0)
    history: list[dict[str, float]] = [{"step": 0, "val_loss": _loss(model, processor, held_out, batch_size, device)}]
    step = 0
    try:
        for epoch in range(epochs):
            data.set_epoch(epoch)
            for batch in loader:
                loss = _batch_loss(model, batch, device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                history.append({"step": step, "loss": loss.item()})
            history.append({"step": step, "val_loss": _loss(model, processor, held_out, batch_size, device)})
            log.info("Explanation epoch %d: train loss %.4f, validation loss %.4f", epoch, history[-2]["loss"],
                     history[-1]["val_loss"])
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(was_trainable[name])
    if plot_path is not None:
        plot_losses(history, plot_path, "Explanation phase (adapter only): cross-entropy of the decoder's choices "
                    f"(val split, {len(val)} tasks)")
    return history


def _batch_loss(model: EmberVLM, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        hidden = model(**model_inputs(batch, device))["hidden_states"]
    return choice_loss(hidden, {key: value.to(device) for key, value in batch.items()}, model.token_scores)


@torch.no_grad()
def _loss(model: EmberVLM, processor: EmberProcessor, data: SelectionDataset, batch_size: int,
          device: torch.device) -> float:
    losses = [_batch_loss(model, collate([data[i] for i in range(start, min(start + batch_size, len(data)))], processor),
                          device).item() for start in range(0, len(data), batch_size)]
    return sum(losses) / max(1, len(losses))
