"""TrainArgs: the settings of a training run (any stage), the one home of their defaults and of `ember train`'s flags."""
from __future__ import annotations

from dataclasses import dataclass

from ember_core.model.config import DEFAULT_PRESET, PRESETS
from ember_core.options import option
from ember_train.public_data import PUBLIC_DATA

PRECISIONS = ("no", "bf16", "fp16")
WANDB_MODES = ("online", "offline", "disabled")
STAGES = ("1", "2", "3", "all")


@dataclass
class TrainArgs:
    """The knobs of a training run; names follow the design's command line. A "step" is one batch (per process)."""

    stage: str = option("3", "stage to train: 1 (vision-language alignment), 2 (instruction tuning), 3 (fleet "
                        "selection), or all (1 -> 2 -> 3, each warm-starting from the one before)", STAGES)
    stage1_data: str | None = option(None, "Stage 1 data: a folder with COCO captions, VQA v2 and JSONL image-text "
                                     "files, or one .jsonl file")
    stage2_data: str | None = option(None, "Stage 2 data: a LLaVA-Instruct JSON file or a folder of them")
    stage2_image_root: str | None = option(None, "folder Stage 2's image paths are relative to (default: the JSON "
                                           "file's folder)")
    robot_data: str = option(str(PUBLIC_DATA), "Stage 3 data: public dataset directory, a .jsonl file, or a "
                             "directory of .jsonl files ($EMBER_DATA sets the default)")
    output_dir: str = option("outputs", "where stage1/, stage2/ and stage3/ (checkpoints, visualizations) are written")
    stage1_epochs: int = option(3, "Stage 1 epochs")
    stage2_epochs: int = option(3, "Stage 2 epochs")
    stage3_robot_epochs: int = option(30, "Stage 3 epochs over the training split")
    stage1_part_lr: str | None = option(None, "what Stage 1 trains: learning-rate multipliers by part, e.g. "
                                        "vision=0,head=1 (0 freezes; parts left out keep the stage's default)")
    stage2_part_lr: str | None = option(None, "the same for Stage 2")
    stage3_part_lr: str | None = option(None, "the same for Stage 3")
    explanation_epochs: int = option(12, "epochs of the explanation phase after selection training (only the "
                                     "explanation adapter trains, so robot scores do not move; 0 skips it)")
    explanation_learning_rate: float = option(3e-3, "AdamW learning rate of the explanation phase")
    batch_size: int = option(32, "batch size per process")
    learning_rate: float = option(2e-4, "AdamW learning rate (each part's is this times its multiplier)")
    gradient_accumulation: int = option(4, "batches per optimizer update")
    log_steps: int = option(10, "log the training loss every N batches")
    eval_steps: int = option(500, "evaluate on validation every N batches")
    save_steps: int = option(500, "save a checkpoint every N batches")
    save_total_limit: int | None = option(None, "keep at most N checkpoints per stage, deleting the oldest (the "
                                          "latest always stays)")
    resume: str | None = option(None, "continue training from a checkpoint directory of the stage, or auto: each "
                                "stage from its latest checkpoint in output_dir, if it has one (model, optimizer, "
                                "schedule, step, random state, data position and W&B run)")
    mixed_precision: str = option("no", "autocast dtype (weights stay fp32)", PRECISIONS)
    gradient_checkpointing: bool = option(False, "recompute the language model's activations in the backward pass: "
                                          "less memory, more time")
    distributed: bool = option(False, "train with torch.distributed: launch with torchrun (NCCL on GPUs, gloo on CPU)")
    num_workers: int = option(0, "DataLoader worker processes per training process")
    model_config: str = option(DEFAULT_PRESET, "model preset to build when not warm-starting", sorted(PRESETS))
    init_from: str | None = option(None, "warm-start the first stage from a saved model or checkpoint directory "
                                   "(default: the previous stage's latest checkpoint in output_dir, if any)")
    robots: str | None = option(None, "robots.yaml of the fleet to train for (default: the usual lookup)")
    wandb: str = option("offline", "W&B logging mode (DISABLE_WANDB=1 also disables)", WANDB_MODES)
    seed: int = option(0, "seed for splits, augmentation, init and shuffling (each process of a distributed run "
                      "draws its dropout from seed + its rank)")
    augment_factor: int = option(3, "Stage 3 training set size multiplier by augmentation")
    image_dropout: float = option(0.3, "fraction of Stage 3 samples trained without their image")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_ratio: float = option(0.05, "fraction of the updates spent warming the learning rate up")
    device: str = option("auto", "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    max_steps: int | None = option(None, "stop each stage after N batches (smoke tests)")
    kfold: int | None = option(None, "Stage 3 cross-validation: train K models, each tested on one fold of tasks")
    fold: int = option(0, "with --kfold: the fold held out as the test set (the CLI runs them all)")

    def epochs(self, stage: int) -> int:
        """The epochs of Stage `stage`."""
        return {1: self.stage1_epochs, 2: self.stage2_epochs, 3: self.stage3_robot_epochs}[stage]

    def part_lr(self, stage: int) -> str | None:
        """The --stage{N}_part_lr of Stage `stage`."""
        return {1: self.stage1_part_lr, 2: self.stage2_part_lr, 3: self.stage3_part_lr}[stage]
