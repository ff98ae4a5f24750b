"""Distributed training building blocks: the process group from torchrun's environment, the DDP wrapper,
gradient accumulation, data sharding, gathers of uneven shards, the schedule length, autocast and per-rank logs.

One code path serves one process and many: without torchrun (or with WORLD_SIZE=1 and no `distributed`
flag) the context is rank 0 of 1, holds no process group, and every helper here is a pass-through.

How the pieces fit in a training loop (every rank runs all of it; only `ctx.is_main` logs and saves):
- the forward goes through `wrap_model(model, ctx)`; checkpoints and evaluation use `unwrap_model(...)`;
- forward and backward of a micro-batch run inside `accumulation_step(...)`, so DDP all-reduces the
  gradients once per optimizer update, on the last micro-batch;
- the training sampler is `make_sampler(...)`, with `sampler.set_epoch(epoch)` before each epoch;
- validation scores `shard_indices(n, ctx)` on each rank and reassembles with `gather_shards(...)`;
- at the end, `max_weight_difference(...)` confirms that the replicas still agree.
`ember_train.trainer` is that loop; on GPUs it wraps with `sync_batchnorm=syncs_batchnorm(model, ctx)`, so
BatchNorm normalises over the global batch.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sized

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ember_core.pretrained import resolve_device

# Autocast dtype of each `--mixed_precision` choice (ember_train.args.PRECISIONS).
AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run: its ranks, the world size and its device.

    `distributed` is True when a process group exists (then every rank must join each collective).
    Use it as a context manager, so the process group is destroyed however the run ends.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    distributed: bool

    @classmethod
    def from_environment(cls, distributed: bool = False, device: str | torch.device = "auto") -> DistributedContext:
        """The context of this process, from the variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, ...).

        A process group is created when WORLD_SIZE > 1 or `distributed` is set: NCCL on CUDA, where
        the process first binds cuda:LOCAL_RANK (the `device` index is ignored: torchrun gives each
        local rank its own GPU), and gloo on CPU. Otherwise this is rank 0 of 1 on `device`.
        """
        resolved = resolve_device(device)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1 and not distributed:
            return cls(rank=0, local_rank=0, world_size=1, device=resolved, distributed=False)
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise ValueError(f"--distributed needs the environment torchrun sets, but {', '.join(missing)} "
                             "is not set: launch with `torchrun --nproc_per_node=N -m ember_train ...`, "
                             "or leave out --distributed for one process")
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        if resolved.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                                 "start at most that many processes per node (--nproc_per_node)")
            resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)  # before the process group, so NCCL never lands every rank on GPU 0
            dist.init_process_group("nccl", device_id=resolved)
        else:
            dist.init_process_group("gloo")
        return cls(rank=rank, local_rank=local_rank, world_size=world_size, device=resolved, distributed=True)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, plots, writes W&B and saves checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. rank 0 indexed the data, the others may now read it)."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group, if this process made one and it still exists."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def syncs_batchnorm(model: nn.Module, ctx: DistributedContext) -> bool:
    """Whether training `model` in `ctx` wants SyncBatchNorm: under DDP on GPUs, when a BatchNorm layer of it
    trains (the vision encoder's), so that it normalises with the statistics of the global batch instead of
    its rank's share.

    Not on CPU: SyncBatchNorm runs only on GPUs, so a gloo run keeps plain BatchNorm, each rank normalising
    with its own batch's statistics (DDP still broadcasts rank 0's running statistics at each forward).
    Not for frozen BatchNorm layers: they normalise with their running statistics and have nothing to sync.
    """
    return ctx.distributed and ctx.device.type == "cuda" and any(
        isinstance(layer, nn.modules.batchnorm._BatchNorm) and any(p.requires_grad for p in layer.parameters())
        for layer in model.modules())


def wrap_model(model: nn.Module, ctx: DistributedContext, find_unused_parameters: bool = False,
               sync_batchnorm: bool = False) -> nn.Module:
    """`model` on `ctx.device`, in DistributedDataParallel when distributed (itself otherwise).

    Training must call the returned module: DDP synchronises gradients only for a forward that goes
    through it, and at the wrap it broadcasts rank 0's parameters and buffers, so every replica starts
    from the same weights. Set `find_unused_parameters` when a stage's loss leaves some trainable part
    unused. With `sync_batchnorm` (see `syncs_batchnorm`) the BatchNorm layers become SyncBatchNorm in
    place, keeping their parameters, buffers and state-dict keys; every rank must then run them in every
    training forward, as their statistics and gradients are collectives.
    """
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise), for saving and for evaluation.

    Evaluation calls it rather than the wrapper because a DDP forward broadcasts buffers, a
    collective that deadlocks when ranks score shards of different sizes.
    """
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def accumulation_step(model: nn.Module, is_last_micro_step: bool) -> Iterator[None]:
    """Run one micro-batch's forward and backward in this block: before the last micro-batch of an
    update, a DDP model skips the gradient all-reduce (`no_sync`), so gradients are synchronised
    once per optimizer step with the sum of every micro-batch."""
    if isinstance(model, DistributedDataParallel) and not is_last_micro_step:
        with model.no_sync():
            yield
    else:
        yield


def make_sampler(dataset: Sized, ctx: DistributedContext, shuffle: bool, seed: int) -> DistributedSampler:
    """This rank's share of `dataset`, reshuffled from `seed` and the epoch: call `set_epoch(epoch)`
    before each epoch, or every epoch repeats the first one's order.

    One process gets a DistributedSampler of one replica, so an epoch's order depends only on the
    seed and the epoch (a resumed run replays it) and is the order 1 and N processes share. With N
    processes the shards are padded with repeated samples to equal length, so every rank runs the
    same number of steps and no rank waits forever in a collective.
    """
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed)


def shard_indices(num_samples: int, ctx: DistributedContext) -> range:
    """This rank's evaluation samples: every world_size-th from its rank, never padded, so the shards
    (one longer than another by at most one) hold each sample exactly once."""
    return range(ctx.rank, num_samples, ctx.world_size)


def gather_shards(shard: torch.Tensor, num_samples: int, ctx: DistributedContext) -> torch.Tensor:
    """Every rank's rows for `shard_indices(num_samples, ctx)`, reassembled on every rank in sample order.

    Shards differ in length, so each is padded to the longest for the all-gather and trimmed after.
    Every rank must call this, with rows of the same trailing shape and dtype.
    """
    expected = len(shard_indices(num_samples, ctx))
    if shard.shape[0] != expected:
        raise ValueError(f"rank {ctx.rank} holds {shard.shape[0]} rows, but its shard of {num_samples} "
                         f"samples has {expected}: score exactly shard_indices({num_samples}, ctx)")
    if not ctx.distributed:
        return shard
    longest = math.ceil(num_samples / ctx.world_size)
    padded = shard.new_zeros((longest, *shard.shape[1:]))
    padded[:expected] = shard
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    gathered = shard.new_empty((num_samples, *shard.shape[1:]))
    for rank, part in enumerate(parts):
        gathered[rank::ctx.world_size] = part[:len(range(rank, num_samples, ctx.world_size))]
    return gathered


def all_reduce_sum(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """The sum of `value` over all ranks (a copy; `value` is left as it is), e.g. loss sums and counts."""
    return _all_reduced(value, ctx, dist.ReduceOp.SUM)


def gather_objects(value: Any, ctx: DistributedContext) -> list[Any]:
    """`value` of every rank, in rank order, on every rank (any picklable value, e.g. random generator states)."""
    if not ctx.distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def all_reduce_max(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """The elementwise maximum of `value` over all ranks (a copy), e.g. per-sample marks each rank set."""
    return _all_reduced(value, ctx, dist.ReduceOp.MAX)


def _all_reduced(value: torch.Tensor, ctx: DistributedContext, op: dist.ReduceOp) -> torch.Tensor:
    total = value.detach().clone()
    if ctx.distributed:
        dist.all_reduce(total, op=op)
    return total


def max_weight_difference(model: nn.Module, ctx: DistributedContext) -> float:
    """The largest absolute difference between this rank's parameters and rank 0's, over all ranks (0.0 in
    one process): DDP keeps replicas identical, so anything else means the gradients were not synchronised."""
    if not ctx.distributed:
        return 0.0
    largest = torch.zeros((), device=ctx.device)
    for parameter in model.parameters():
        if not parameter.numel():
            continue
        reference = parameter.detach().clone()
        dist.broadcast(reference, src=0)
        largest = torch.maximum(largest, (parameter.detach() - reference).abs().max().float())
    return float(all_reduce_max(largest, ctx))


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Batches each rank runs in an epoch: its padded shard of `num_samples`, the last batch partial."""
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size), ("world_size", world_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    return math.ceil(math.ceil(num_samples / world_size) / batch_size)


def total_updates(num_samples: int, batch_size: int, gradient_accumulation: int, world_size: int, epochs: int) -> int:
    """Optimizer updates in a run, the length of its learning-rate schedule: per epoch, one every
    `gradient_accumulation` batches, plus one for a shorter group at the end of the epoch."""
    if gradient_accumulation < 1 or epochs < 0:
        raise ValueError(f"gradient_accumulation must be at least 1 and epochs at least 0, "
                         f"got {gradient_accumulation} and {epochs}")
    return math.ceil(batches_per_epoch(num_samples, batch_size, world_size) / gradient_accumulation) * epochs


def autocast(ctx: DistributedContext, mixed_precision: str) -> torch.autocast:
    """Autocast for `mixed_precision` ("no", "bf16", "fp16") on this rank's device.

    Autocast computes in the low precision while parameters, gradients and optimizer state stay fp32
    (the master weights). A requested precision applies on CPU as well: torch supports bf16 there,
    and a CPU run then takes the same numeric path as a GPU one; "no", the default, disables it.
    fp16 gradients can underflow without a torch.amp.GradScaler, so bf16 is the choice for training.
    """
    if mixed_precision not in AUTOCAST_DTYPES:
        raise ValueError(f"--mixed_precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {mixed_precision!r}")
    dtype = AUTOCAST_DTYPES[mixed_precision]
    return torch.autocast(ctx.device.type, dtype=dtype, enabled=dtype is not None)


def log_on_main_only(ctx: DistributedContext) -> None:
    """Keep INFO logs to rank 0: every other rank raises the root logger to WARNING, which the `ember`
    loggers inherit, so N processes print one log plus the warnings of any rank. Call it after
    logging is configured (`logging.basicConfig` sets the root level)."""
    if not ctx.is_main:
        root = logging.getLogger()
        root.setLevel(max(root.level, logging.WARNING))
