"""The random streams of a training process: seeding them, and their state, which a checkpoint keeps per rank.

A stage seeds every rank alike while it builds the model, so the replicas start identical (DDP also
broadcasts rank 0's weights when it wraps the model). Training then seeds each rank with seed + rank,
as nanoGPT offsets its seed: without the offset, corresponding rows on different ranks would get the
same dropout masks. What must agree across ranks draws from generators of its own: the data order
(the DistributedSampler's seed and epoch) and per-sample augmentation (seeded by seed, epoch and index).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_all(seed: int, rank: int = 0) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every GPU) with `seed + rank`."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's generator states: Python, NumPy, torch's CPU one and, training on a GPU, that GPU's.

    Plain lists and tensors only, so `torch.load(..., weights_only=True)` reads them back.
    """
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(position), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Put the generators back as `rng_state` found them (a GPU's only if the state has one: saved on a GPU)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
