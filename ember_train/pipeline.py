"""The stages a training run asks for, one after another, each warm-starting from the latest checkpoint of the one before."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ember_train.args import TrainArgs
from ember_train.checkpointing import latest_checkpoint
from ember_train.distributed import DistributedContext
from ember_train.stage1 import AlignmentStage
from ember_train.stage2 import InstructionStage
from ember_train.stage3 import SelectionStage
from ember_train.trainer import Trainer

log = logging.getLogger("ember.train")

STAGE_TYPES = {1: AlignmentStage, 2: InstructionStage, 3: SelectionStage}


def stage_numbers(stage: str) -> list[int]:
    """The stages `--stage` names: "all" is 1, 2, 3."""
    return sorted(STAGE_TYPES) if stage == "all" else [int(stage)]


def train_stages(args: TrainArgs, ctx: DistributedContext) -> dict[str, Any]:
    """Train every stage of `args.stage` in order; the last stage's summary.

    The first stage starts from `--init_from` when given; every other start is the previous stage's
    latest checkpoint in `--output_dir` (for a first stage after 1, when there is one). With `--resume`
    a stage continues from its checkpoint instead.
    """
    summary: dict[str, Any] = {}
    for position, number in enumerate(stage_numbers(args.stage)):
        resume_from = resume_checkpoint(args, number)
        if resume_from:
            init_from = str(resume_from)
        else:
            init_from = args.init_from if position == 0 and args.init_from else previous_checkpoint(args, number)
        summary = Trainer(STAGE_TYPES[number](args, ctx, init_from), resume_from).train()
        ctx.barrier()  # rank 0's checkpoint is complete before any rank reads it
    return summary


def previous_checkpoint(args: TrainArgs, number: int) -> str | None:
    """The latest checkpoint of Stage `number - 1` in the output directory, logged; None for Stage 1 or when it has none."""
    if number == 1:
        return None
    log.info("Auto-detecting checkpoint from previous stage for Stage %d...", number)
    previous = Path(args.output_dir) / f"stage{number - 1}"
    checkpoint = latest_checkpoint(previous)
    if checkpoint is None:
        log.info("No Stage %d checkpoint in %s", number - 1, previous)
        return None
    log.info("Found latest checkpoint from Stage %d: %s", number - 1, checkpoint)
    return str(checkpoint)


def resume_checkpoint(args: TrainArgs, number: int) -> Path | None:
    """The checkpoint Stage `number` resumes from: `--resume DIR` (one stage at a time), or with `--resume auto`
    the stage's latest checkpoint in the output directory when it has one; None without `--resume`."""
    if not args.resume:
        return None
    if args.resume != "auto":
        if args.stage == "all":
            raise ValueError(f"--resume {args.resume} names one stage's checkpoint: give that stage's --stage, or "
                             "use --resume auto to continue every stage from its latest checkpoint")
        return Path(args.resume)
    checkpoint = latest_checkpoint(Path(args.output_dir) / f"stage{number}")
    if checkpoint is None:
        log.info("No Stage %d checkpoint to resume in %s: starting the stage", number, args.output_dir)
    return checkpoint
