"""Training checkpoints: optimizer, scheduler, RNG and loop state come back exactly; writes are atomic."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ember_core import load_fleet
from ember_core.model.checkpoint import EmberModel
from ember_core.model.config import preset
from ember_train.checkpointing import latest_checkpoint, load_training_state, save_checkpoint


def make_optimizer(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 / (update + 1))
    return optimizer, scheduler


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return EmberModel.build(preset("tiny"), load_fleet())


def one_update(model, optimizer, scheduler):
    loss = sum(p.float().pow(2).sum() for p in model.robot_head.parameters())
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_training_state_round_trip_is_exact(bundle, tmp_path):
    model = bundle.model
    optimizer, scheduler = make_optimizer(model)
    one_update(model, optimizer, scheduler)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    path = save_checkpoint(bundle, tmp_path / "stage3", 12, optimizer, scheduler, {"epoch": 2, "wandb_run_id": "abc"})
    expected = (random.random(), np.random.rand(), torch.rand(1))

    fresh_optimizer, fresh_scheduler = make_optimizer(model)
    state = load_training_state(path, fresh_optimizer, fresh_scheduler)
    assert state["step"] == 12 and state["epoch"] == 2 and state["wandb_run_id"] == "abc"
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    saved, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved)
    assert latest_checkpoint(tmp_path / "stage3") == path


def test_a_failed_checkpoint_keeps_latest_on_the_previous_one(bundle, tmp_path, monkeypatch):
    optimizer, scheduler = make_optimizer(bundle.model)
    first = save_checkpoint(bundle, tmp_path, 1, optimizer, scheduler, {"epoch": 0})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(bundle, tmp_path, 2, optimizer, scheduler, {"epoch": 0})
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "latest"]
