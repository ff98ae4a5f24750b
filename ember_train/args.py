"""Stage3Args: the settings of a training run, the one home of their defaults and of `ember train`'s flags."""
from __future__ import annotations

from dataclasses import dataclass

from ember_core.model.config import DEFAULT_PRESET, PRESETS
from ember_core.options import option
from ember_train.public_data import PUBLIC_DATA

PRECISIONS = ("no", "bf16", "fp16")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class Stage3Args:
    """The knobs of a Stage 3 (fleet selection) run; names follow the design's command line. A "step" is one batch."""

    robot_data: str = option(str(PUBLIC_DATA), "public dataset directory, a .jsonl file, or a directory of .jsonl "
                             "files ($EMBER_DATA sets the default)")
    output_dir: str = option("outputs", "where stage3/ (checkpoints, visualizations) is written")
    stage3_robot_epochs: int = option(30, "epochs over the training split")
    explanation_epochs: int = option(12, "epochs of the explanation phase after selection training (only the "
                                     "explanation adapter trains, so robot scores do not move; 0 skips it)")
    explanation_learning_rate: float = option(3e-3, "AdamW learning rate of the explanation phase")
    batch_size: int = option(32, "batch size")
    learning_rate: float = option(2e-4, "AdamW learning rate")
    gradient_accumulation: int = option(4, "batches per optimizer update")
    eval_steps: int = option(500, "evaluate on validation every N batches")
    save_steps: int = option(500, "save a checkpoint every N batches")
    mixed_precision: str = option("no", "autocast dtype", PRECISIONS)
    model_config: str = option(DEFAULT_PRESET, "model preset to build", sorted(PRESETS))
    init_from: str | None = option(None, "warm-start from a saved model or checkpoint directory")
    robots: str | None = option(None, "robots.yaml of the fleet to train for (default: the usual lookup)")
    wandb: str = option("offline", "W&B logging mode (DISABLE_WANDB=1 also disables)", WANDB_MODES)
    seed: int = option(0, "seed for splits, augmentation, init and shuffling")
    augment_factor: int = option(3, "training set size multiplier by augmentation")
    image_dropout: float = option(0.3, "fraction of samples trained without their image")
    weight_decay: float = option(0.01, "AdamW weight decay")
    head_lr_multiplier: float = option(10.0, "robot head learning rate = learning_rate x this")
    warmup_ratio: float = option(0.05, "fraction of the updates spent warming the learning rate up")
    device: str = option("auto", "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    max_steps: int | None = option(None, "stop after N batches (smoke tests)")
    kfold: int | None = option(None, "cross-validate: train K models, each tested on one fold of tasks")
    fold: int = option(0, "with --kfold: the fold held out as the test set (the CLI runs them all)")
