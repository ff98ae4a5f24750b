"""Distributed building blocks: a real 2-process torchrun (gloo) against one process, the one-process
fallback, autocast, per-rank logging and the schedule length."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from distributed_worker import EPOCHS, TRAIN_SAMPLES, VAL_SAMPLES, train, training_draws, validate
from ember_train.distributed import (DistributedContext, accumulation_step, all_reduce_sum, autocast,
                                     batches_per_epoch, gather_shards, log_on_main_only, make_sampler,
                                     shard_indices, total_updates, unwrap_model, wrap_model)

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _outside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each rank of `torchrun --standalone --nproc_per_node=2` (gloo, CPU) of the worker wrote."""
    out_dir = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name in TORCHRUN_VARIABLES:
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(WORKER), str(out_dir)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


@pytest.fixture(scope="module")
def one_process() -> tuple[nn.Module, dict]:
    """The same global batch of 8 per update in one process: 4 micro-batches of 2 instead of 2 ranks x 2."""
    return train(DistributedContext.from_environment(), gradient_accumulation=4)


def test_both_ranks_hold_identical_weights_after_accumulated_updates(two_ranks):
    first, second = two_ranks
    assert first["world_size"] == second["world_size"] == 2
    assert len(first["losses"]) == total_updates(TRAIN_SAMPLES, 2, 2, 2, EPOCHS) == 4
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name
    assert torch.equal(first["losses"], second["losses"])


def test_two_ranks_train_as_one_process_on_the_same_global_batch(two_ranks, one_process):
    _, single = one_process
    assert len(single["losses"]) == total_updates(TRAIN_SAMPLES, 2, 4, 1, EPOCHS) == 4
    torch.testing.assert_close(two_ranks[0]["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    for name, value in single["weights"].items():
        torch.testing.assert_close(two_ranks[0]["weights"][name], value, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(single["weights"]["0.weight"], nn.Linear(4, 8).weight), "the weights never moved"


def test_wrapping_gives_every_rank_rank_zeros_initial_weights(two_ranks):
    """Each rank initialises its model from a different seed; DDP's wrap broadcasts rank 0's weights."""
    torch.manual_seed(0)
    rank_zero_init = nn.Linear(4, 3).weight
    for rank in two_ranks:
        assert torch.equal(rank["draws"]["wrapped_weight"], rank_zero_init)


def test_each_rank_draws_its_own_dropout_masks_after_training_seeds_it(two_ranks):
    first, second = (rank["draws"]["dropout_mask"] for rank in two_ranks)
    assert not torch.equal(first, second)
    alone = training_draws(DistributedContext.from_environment(device="cpu"), seed=0)["dropout_mask"]
    assert torch.equal(first, alone)  # rank 0 draws what one process draws


def test_gather_objects_hands_every_rank_each_ranks_value_in_rank_order(two_ranks):
    assert [rank["ranks"] for rank in two_ranks] == [[{"rank": 0}, {"rank": 1}]] * 2


def test_uneven_validation_shards_gather_every_sample_once_in_order(two_ranks, one_process):
    model, _ = one_process
    expected = validate(model, DistributedContext.from_environment(), VAL_SAMPLES)
    for rank in two_ranks:
        gathered = rank["validation"]
        assert gathered["indices"].tolist() == list(range(VAL_SAMPLES))
        assert gathered["count"].item() == VAL_SAMPLES
        torch.testing.assert_close(gathered["outputs"], expected["outputs"], rtol=1e-5, atol=1e-6)
        assert rank["single_sample_validation"]["indices"].tolist() == [0]  # rank 1's shard is empty


def test_one_process_is_rank_zero_of_one_and_every_helper_passes_through():
    with DistributedContext.from_environment(device="cpu") as ctx:
        assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 0, 1, True, False)
        assert ctx.device == torch.device("cpu")
        ctx.barrier()
        model = nn.Linear(3, 1)
        assert wrap_model(model, ctx) is model and unwrap_model(model) is model
        with accumulation_step(model, is_last_micro_step=False):
            model(torch.ones(1, 3)).sum().backward()
        assert model.weight.grad is not None
        assert shard_indices(VAL_SAMPLES, ctx) == range(VAL_SAMPLES)
        rows = torch.arange(VAL_SAMPLES)
        assert gather_shards(rows, VAL_SAMPLES, ctx) is rows
        total = all_reduce_sum(rows, ctx)
        assert torch.equal(total, rows) and total is not rows
    assert sorted(make_sampler(range(5), ctx, shuffle=False, seed=0)) == [0, 1, 2, 3, 4]


def test_one_process_sampler_reshuffles_per_epoch_and_replays_an_epoch():
    ctx = DistributedContext.from_environment(device="cpu")
    sampler = make_sampler(range(20), ctx, shuffle=True, seed=3)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert sorted(orders[0]) == list(range(20))
    assert orders[0] != orders[1] and orders[0] == orders[2]


def test_gather_rejects_rows_that_are_not_this_ranks_shard():
    with pytest.raises(ValueError, match=r"holds 6 rows, but its shard of 7 samples has 7"):
        gather_shards(torch.zeros(6), 7, DistributedContext.from_environment(device="cpu"))


def test_distributed_without_torchrun_names_the_missing_variables_and_the_launcher():
    with pytest.raises(ValueError, match=r"RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.*torchrun"):
        DistributedContext.from_environment(distributed=True)


def test_bf16_autocast_computes_in_bf16_and_keeps_fp32_master_weights():
    ctx = DistributedContext.from_environment(device="cpu")
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with autocast(ctx, "bf16"):
        output = model(torch.ones(3, 4))
    output.float().sum().backward()
    optimizer.step()
    assert output.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {p.grad.dtype for p in model.parameters()} == {torch.float32}
    with autocast(ctx, "no"):
        assert model(torch.ones(3, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="--mixed_precision must be one of no, bf16, fp16, got 'fp8'"):
        autocast(ctx, "fp8")


def test_only_rank_zero_logs_info():
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.INFO)
        log_on_main_only(DistributedContext(0, 0, 2, torch.device("cpu"), distributed=False))
        assert logging.getLogger("ember.train").isEnabledFor(logging.INFO)
        log_on_main_only(DistributedContext(1, 1, 2, torch.device("cpu"), distributed=False))
        assert not logging.getLogger("ember.train").isEnabledFor(logging.INFO)
        assert logging.getLogger("ember.train").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(before)


@pytest.mark.parametrize("num_samples, batch_size, world_size",
                         [(16, 2, 2), (7, 2, 2), (100, 8, 3), (5, 4, 8), (1, 1, 1)])
def test_batches_per_epoch_is_what_a_rank_of_the_sampler_yields(num_samples, batch_size, world_size):
    for rank in range(world_size):
        sampler = DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank, shuffle=False)
        loader = torch.utils.data.DataLoader(range(num_samples), batch_size=batch_size, sampler=sampler)
        assert batches_per_epoch(num_samples, batch_size, world_size) == len(loader)


def test_total_updates_counts_a_shorter_accumulation_group_at_each_epoch_end():
    # 100 samples on 3 ranks: 34 each, 5 batches of 8; accumulating 2: updates after batches 2, 4 and 5.
    assert total_updates(100, 8, 2, 3, epochs=10) == 30
    assert total_updates(100, 8, 2, 1, epochs=10) == 70  # 13 batches -> 7 updates
    assert total_updates(16, 2, 2, 2, epochs=2) == 4
    assert total_updates(16, 2, 1, 1, epochs=0) == 0


@pytest.mark.parametrize("arguments, named", [((0, 8, 1, 1, 1), "num_samples"), ((10, 0, 1, 1, 1), "batch_size"),
                                              ((10, 8, 0, 1, 1), "gradient_accumulation"),
                                              ((10, 8, 1, 0, 1), "world_size")])
def test_total_updates_rejects_empty_settings_by_name(arguments, named):
    with pytest.raises(ValueError, match=named):
        total_updates(*arguments)
