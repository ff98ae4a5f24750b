"""SyncBatchNorm under DDP on GPUs: when the trainer converts BatchNorm layers, that the conversion keeps the
checkpoint's keys and the optimizer's parameters, and that every batch then runs the vision encoder.

SyncBatchNorm itself runs only on GPUs (DDP refuses it on CPU), so these CPU tests check the decision, the
converted model's tensors, and the batches that make every rank join its collectives.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ember_train.args import TrainArgs
from ember_train.distributed import DistributedContext, syncs_batchnorm
from ember_train.parts import apply_parts, part_multipliers
from ember_train.stage3 import SelectionStage
from test_stage3 import write_dataset

CUDA_RANK = DistributedContext(0, 0, 2, torch.device("cuda", 0), distributed=True)
CPU_RANK = DistributedContext(0, 0, 2, torch.device("cpu"), distributed=True)
CUDA_ALONE = DistributedContext(0, 0, 1, torch.device("cuda", 0), distributed=False)


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> SelectionStage:
    """A tiny Stage 3 whose every training sample drops its image (so no batch carries pixels)."""
    base = tmp_path_factory.mktemp("sync_batchnorm")
    args = TrainArgs(robot_data=str(write_dataset(base / "tasks.jsonl")), output_dir=str(base / "out"),
                     model_config="tiny", augment_factor=1, image_dropout=1.0, wandb="disabled")
    return SelectionStage(args, DistributedContext.from_environment(device="cpu"), init_from=None)


def trains_parts(stage: SelectionStage, number: int) -> None:
    apply_parts(stage.model, part_multipliers(number, None), 1e-3, 0.0)


def test_batchnorm_syncs_under_ddp_on_gpus_when_the_vision_encoder_trains(stage):
    trains_parts(stage, 3)
    assert syncs_batchnorm(stage.objective, CUDA_RANK)
    assert not syncs_batchnorm(stage.objective, CPU_RANK)  # gloo: no SyncBatchNorm on CPU
    assert not syncs_batchnorm(stage.objective, CUDA_ALONE)  # one process: nothing to sync with
    trains_parts(stage, 2)  # Stage 2 freezes the vision encoder: its BatchNorm uses running statistics
    assert not syncs_batchnorm(stage.objective, CUDA_RANK)
    assert not syncs_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), CUDA_RANK)


def test_conversion_keeps_the_state_dict_keys_and_the_optimizers_parameters(stage):
    trains_parts(stage, 3)
    model = stage.objective
    before = {key: value.clone() for key, value in model.state_dict().items()}
    parameters = [id(p) for p in model.parameters()]
    norms = sum(isinstance(layer, nn.BatchNorm2d) for layer in model.modules())
    assert nn.SyncBatchNorm.convert_sync_batchnorm(model) is model and norms > 0  # converted in place
    assert sum(isinstance(layer, nn.SyncBatchNorm) for layer in model.modules()) == norms
    after = model.state_dict()
    assert list(after) == list(before)  # checkpoints load either way
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert [id(p) for p in model.parameters()] == parameters  # the optimizer, built before the wrap, still trains them


def test_a_batch_without_images_still_runs_the_vision_encoder_with_the_same_loss(stage):
    """Under SyncBatchNorm each training forward all-gathers the batch statistics and each backward all-reduces
    their gradients: a rank whose batch skipped the vision encoder (every image dropped) would leave the others
    waiting. `with_images` gives such a batch blank images marked absent, which the model does not look at."""
    trains_parts(stage, 3)
    batch = stage.collate([stage.train_data[index] for index in range(4)])
    assert "pixel_values" not in batch
    norms = [layer for layer in stage.model.vision.backbone.modules() if isinstance(layer, _BatchNorm)]
    objective = stage.objective.train()
    losses, reached = {}, {}
    for name, inputs in (("without", batch), ("blank", stage.with_images(batch))):
        objective.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        loss = objective(inputs)["loss"]
        loss.backward()
        losses[name], reached[name] = loss.detach(), all(layer.weight.grad is not None for layer in norms)
    torch.testing.assert_close(losses["blank"], losses["without"])
    assert reached == {"without": False, "blank": True}  # the backward runs through every BatchNorm
