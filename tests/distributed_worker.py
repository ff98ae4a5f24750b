"""A tiny DDP run for tests/test_distributed.py: under torchrun each rank writes what it ends with to
OUT_DIR/rank{N}.pt; in one process the test calls `train`, `validate` and `training_draws` for the reference."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ember_train.distributed import (DistributedContext, accumulation_step, all_reduce_sum, gather_objects,
                                     gather_shards, make_sampler, shard_indices, unwrap_model, wrap_model)
from ember_train.rng import seed_all

TRAIN_SAMPLES, VAL_SAMPLES, BATCH_SIZE, EPOCHS = 16, 7, 2, 2


def samples(count: int, seed: int) -> TensorDataset:
    inputs = torch.randn(count, 4, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(inputs, inputs.sum(1, keepdim=True).sin())


def train(ctx: DistributedContext, gradient_accumulation: int) -> tuple[nn.Module, dict]:
    """SGD on a seeded MLP through the building blocks; returns the wrapped model, its weights and
    the loss of every update averaged over all ranks."""
    torch.manual_seed(0)
    model = wrap_model(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), ctx)
    data = samples(TRAIN_SAMPLES, seed=1)
    sampler = make_sampler(data, ctx, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=BATCH_SIZE, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, update_loss = [], torch.zeros(())
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for index, (inputs, targets) in enumerate(loader):
            last = (index + 1) % gradient_accumulation == 0 or index + 1 == len(loader)
            with accumulation_step(model, last):
                loss = F.mse_loss(model(inputs), targets)
                (loss / gradient_accumulation).backward()
            update_loss += loss.detach()
            if last:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(all_reduce_sum(update_loss, ctx) / (gradient_accumulation * ctx.world_size))
                update_loss = torch.zeros(())
    weights = {name: value.detach().clone() for name, value in unwrap_model(model).state_dict().items()}
    return model, {"weights": weights, "losses": torch.stack(losses)}


@torch.no_grad()
def validate(model: nn.Module, ctx: DistributedContext, num_samples: int) -> dict:
    """Scores this rank's shard one sample per forward (so ranks run different numbers of forwards)
    with the unwrapped model, then gathers indices, outputs and the sample count from every rank."""
    data = samples(num_samples, seed=2)
    shard = shard_indices(num_samples, ctx)
    evaluated = unwrap_model(model).eval()
    outputs = [evaluated(data[index][0].unsqueeze(0)) for index in shard]
    rows = torch.cat(outputs) if outputs else torch.zeros(0, 1)
    return {"indices": gather_shards(torch.tensor(list(shard), dtype=torch.long), num_samples, ctx),
            "outputs": gather_shards(rows, num_samples, ctx),
            "count": all_reduce_sum(torch.tensor(len(shard)), ctx)}


def training_draws(ctx: DistributedContext, seed: int) -> dict:
    """What the trainer's seeding gives this rank: a model initialised from a different seed on each rank, as
    DDP leaves it after the wrap, and a dropout mask drawn after `seed_all(seed, rank)`, as in a training step."""
    torch.manual_seed(ctx.rank)
    wrapped = unwrap_model(wrap_model(nn.Linear(4, 3), ctx))
    seed_all(seed, ctx.rank)
    return {"wrapped_weight": wrapped.weight.detach().clone(),
            "dropout_mask": F.dropout(torch.ones(256), p=0.5, training=True) != 0}


def main(out_dir: Path) -> None:
    with DistributedContext.from_environment(distributed=True) as ctx:
        model, result = train(ctx, gradient_accumulation=2)
        result["validation"] = validate(model, ctx, VAL_SAMPLES)
        result["single_sample_validation"] = validate(model, ctx, 1)
        result["world_size"] = ctx.world_size
        result["draws"] = training_draws(ctx, seed=0)
        result["ranks"] = gather_objects({"rank": ctx.rank}, ctx)
        torch.save(result, out_dir / f"rank{ctx.rank}.pt")
        ctx.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
