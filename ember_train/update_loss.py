"""The loss of an optimizer update: each term's summed loss over its items (tasks, decision points, target tokens)
divided by the number of those items in the whole update, every micro-batch on every rank.

A mean per micro-batch and per rank weighs an item by the size of its micro-batch: a decision point in a
micro-batch with few of them counts more than one in a crowded micro-batch, so gradient accumulation or more
processes would change what is learned. As the HF Trainer does with `num_items_in_batch`, the trainer reads an
update's micro-batches ahead, counts each term's items in them (`objective.counts(batch)`), sums the counts
over the ranks, and backpropagates each micro-batch's summed losses (`objective(batch)["sums"]`) divided by
those totals, times the world size, since DDP averages the ranks' gradients. One process with batch B x N and
N processes with batch B then take the same steps.

An objective names its terms in `terms`; its `counts` and `sums` hold each of them, on every batch.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ember_train.distributed import DistributedContext, all_reduce_sum


def term_vector(sums: dict[str, torch.Tensor], counts: dict[str, torch.Tensor], terms: Sequence[str]) -> torch.Tensor:
    """The summed losses (detached) and then the item counts of `terms`, as one vector to add up or all-reduce."""
    return torch.stack([sums[name].detach().float() for name in terms] + [counts[name].float() for name in terms])


def mean_loss(vector: torch.Tensor, terms: Sequence[str]) -> float:
    """The loss a `term_vector` (or a sum of them) stands for: each term's summed loss over its items, added up."""
    size = len(terms)
    return float((vector[:size] / vector[size:].clamp(min=1)).sum())


def update_totals(counts: list[dict[str, torch.Tensor]], terms: Sequence[str],
                  ctx: DistributedContext) -> dict[str, torch.Tensor]:
    """Each term's items in an update: `counts` of its micro-batches on this rank, summed over all ranks (every
    rank must call this)."""
    local = torch.stack([sum(batch[name].float() for batch in counts) for name in terms])
    return dict(zip(terms, all_reduce_sum(local, ctx)))


def update_loss(sums: dict[str, torch.Tensor], totals: dict[str, torch.Tensor], world_size: int) -> torch.Tensor:
    """What a micro-batch backpropagates: its summed losses over the update's totals, times `world_size`
    (DDP averages the ranks' gradients); a term without items in the whole update adds 0."""
    return sum(sums[name] * (world_size / totals[name].clamp(min=1)) for name in totals)
