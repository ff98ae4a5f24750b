"""Training checkpoints: the model files plus optimizer, scheduler, RNG and loop state; writes are atomic.

These tests read the files themselves: what a resume needs must be there, exact (tests/test_resume.py
resumes real runs).
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from ember_core import load_fleet
from ember_core.model.config import preset
from ember_core.pretrained import build_model, load_pretrained
from ember_train.checkpointing import LATEST, STATE_DIR, load_training_state, save_checkpoint
from ember_train.rng import restore_rng_state, rng_state


def make_optimizer(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 / (update + 1))
    return optimizer, scheduler


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(preset("tiny"), load_fleet())


def one_update(model, optimizer, scheduler):
    loss = sum(p.float().pow(2).sum() for p in model.robot_head.parameters())
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_training_state_is_saved_exactly(tiny, tmp_path):
    model, processor = tiny
    optimizer, scheduler = make_optimizer(model)
    one_update(model, optimizer, scheduler)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    path = save_checkpoint(model, processor, tmp_path / "stage3", 12, optimizer, scheduler,
                           {"epoch": 2, "wandb_run_id": "abc"}, [rng_state(torch.device("cpu"))])
    expected = (random.random(), np.random.rand(), torch.rand(1))
    assert path == tmp_path / "stage3" / "checkpoint-12"
    assert (tmp_path / "stage3" / LATEST).read_text() == "checkpoint-12\n"

    training = path / STATE_DIR
    state = json.loads((training / "state.json").read_text())
    assert state["step"] == 12 and state["epoch"] == 2 and state["wandb_run_id"] == "abc"
    # Restoring the saved RNG states replays the numbers drawn right after the save.
    restore_rng_state(load_training_state(path, rank=0).rng, torch.device("cpu"))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected

    fresh_optimizer, fresh_scheduler = make_optimizer(model)
    fresh_optimizer.load_state_dict(torch.load(training / "optimizer.pt"))
    fresh_scheduler.load_state_dict(json.loads((training / "scheduler.json").read_text()))
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr() != [1e-3]
    saved, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys() and saved
    assert all(torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved)


def test_each_rank_resumes_its_own_random_generators(tiny, tmp_path):
    """Ranks draw different streams (seed + rank): a checkpoint keeps one state per rank, and each rank reads its own."""
    model, processor = tiny
    optimizer, scheduler = make_optimizer(model)
    states = []
    for seed in (11, 12):
        torch.manual_seed(seed)
        states.append(rng_state(torch.device("cpu")))
    path = save_checkpoint(model, processor, tmp_path, 4, optimizer, scheduler, {"epoch": 0}, states)
    assert sorted(p.name for p in (path / STATE_DIR).glob("rng_state_rank*.pt")) == [
        "rng_state_rank0.pt", "rng_state_rank1.pt"]
    for rank, seed in enumerate((11, 12)):
        restore_rng_state(load_training_state(path, rank).rng, torch.device("cpu"))
        drawn = torch.rand(3)
        torch.manual_seed(seed)
        assert torch.equal(drawn, torch.rand(3)), rank
    assert load_training_state(path, rank=2).rng is None  # a resume with more processes than the save


def test_a_checkpoint_is_a_loadable_model_directory(tiny, tmp_path):
    model, processor = tiny
    optimizer, scheduler = make_optimizer(model)
    path = save_checkpoint(model, processor, tmp_path, 3, optimizer, scheduler, {"epoch": 0}, [])
    loaded, loaded_processor = load_pretrained(path)
    assert loaded_processor.fleet.ids == processor.fleet.ids
    inputs = processor.collate([processor.features("Inspect a bridge")])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs)["robot_logits"], loaded(**inputs)["robot_logits"])


def test_a_failed_checkpoint_keeps_latest_on_the_previous_one(tiny, tmp_path, monkeypatch):
    model, processor = tiny
    optimizer, scheduler = make_optimizer(model)
    first = save_checkpoint(model, processor, tmp_path, 1, optimizer, scheduler, {"epoch": 0}, [])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, processor, tmp_path, 2, optimizer, scheduler, {"epoch": 0}, [])
    assert (tmp_path / LATEST).read_text() == f"{first.name}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "latest"]
