"""The loss of an update is each term's summed loss over its items in the whole update: accumulating micro-batches
whose tasks have different numbers of decision points takes the step of one batch holding them all.
(tests/test_torchrun_trainer.py shows the same across 2 processes.)"""
from __future__ import annotations

import json

import pytest
import torch

from ember_core import load_fleet
from ember_core.model.config import preset
from ember_core.pretrained import build_model
from ember_train.batches import SelectionDataset, collate
from ember_train.data import load_records
from ember_train.distributed import DistributedContext
from ember_train.stage3 import SelectionObjective
from ember_train.update_loss import mean_loss, term_vector, update_loss, update_totals

ONE_PROCESS = DistributedContext(0, 0, 1, torch.device("cpu"), distributed=False)
# 4 tasks of 13 decision points and 4 of 8 (the explanations of a long and a short task).
TASKS = ["Inspect the hull of ship {i} under the sea", "Survey rooftop {i} from above"]


def gradients(objective: SelectionObjective, micro_batches: list[dict]) -> dict[str, torch.Tensor]:
    """The gradients of one update over `micro_batches`, as the trainer accumulates them."""
    objective.zero_grad(set_to_none=True)
    totals = update_totals([objective.counts(batch) for batch in micro_batches], objective.terms, ONE_PROCESS)
    for batch in micro_batches:
        update_loss(objective(batch)["sums"], totals, ONE_PROCESS.world_size).backward()
    return {name: p.grad.clone() for name, p in objective.named_parameters() if p.grad is not None}


def test_accumulated_micro_batches_with_unequal_decision_points_take_the_whole_batchs_step(tmp_path):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", head_dropout=0.0, lm_dropout=0.0), load_fleet())
    model.vision.set_frozen(True)  # BatchNorm on its running statistics: each row's output is its own
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"task": task.format(i=i), "robots": [robot]}) + "\n"
                            for task, robot in zip(TASKS, ["underwater_robot", "drone"]) for i in range(4)))
    items = SelectionDataset(load_records(data, processor.fleet), processor)
    whole = collate([items[index] for index in range(8)], processor)
    halves = [collate([items[index] for index in range(start, start + 4)], processor) for start in (0, 4)]
    objective = SelectionObjective(model, torch.ones(len(processor.fleet))).train()
    assert [int(half["choice_mask"].sum()) for half in halves] == [4 * 13, 4 * 8]

    one_batch, accumulated = gradients(objective, [whole]), gradients(objective, halves)
    assert one_batch.keys() == accumulated.keys() and len(one_batch) > 10
    for name, gradient in one_batch.items():
        torch.testing.assert_close(accumulated[name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    with torch.no_grad():  # the loss the trainer logs for the halves together is the whole batch's
        both = sum(term_vector(objective(batch)["sums"], objective.counts(batch), objective.terms) for batch in halves)
        assert mean_loss(both, objective.terms) == pytest.approx(objective(whole)["loss"].item(), rel=1e-5)
