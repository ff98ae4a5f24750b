"""`ember train` and `ember eval`: argument parsing (seed flag names) and the commands behind them."""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import yaml

STAGES = (3,)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `train` and `eval` on the `ember` command line."""
    train = commands.add_parser("train", help="train a model stage (Stage 3: fleet selection)")
    train.add_argument("--config", metavar="FILE.yaml",
                       help="YAML file of flag values (keys are the flag names without dashes); flags given here win")
    train.add_argument("--stage", type=int, choices=STAGES, required=True, help="training stage to run")
    train.add_argument("--robot_data", metavar="DIR", help="public dataset directory, a .jsonl file, or a directory of .jsonl files")
    train.add_argument("--output_dir", help="where stage3/ (checkpoints, visualizations) is written")
    train.add_argument("--model_config", help="model preset to build (embervlm-37m, tiny)")
    train.add_argument("--init_from", metavar="DIR", help="warm-start from a saved model or checkpoint directory")
    train.add_argument("--robots", metavar="FILE", help="robots.yaml of the fleet to train for")
    train.add_argument("--stage3_robot_epochs", type=int, help="epochs over the training split (default 30)")
    train.add_argument("--batch_size", type=int, help="batch size (default 32)")
    train.add_argument("--learning_rate", type=float, help="AdamW learning rate (default 2e-4)")
    train.add_argument("--gradient_accumulation", type=int, help="batches per optimizer update (default 4)")
    train.add_argument("--eval_steps", type=int, help="evaluate on validation every N batches (default 500)")
    train.add_argument("--save_steps", type=int, help="save a checkpoint every N batches (default 500)")
    train.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"), help="autocast dtype (default no)")
    train.add_argument("--wandb", choices=("online", "offline", "disabled"),
                       help="W&B logging mode (default offline; DISABLE_WANDB=1 also disables)")
    train.add_argument("--seed", type=int, help="seed for splits, augmentation, init and shuffling")
    train.add_argument("--augment_factor", type=int, help="training set size multiplier by augmentation (default 3)")
    train.add_argument("--image_dropout", type=float, help="fraction of samples trained without their image")
    train.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    train.add_argument("--max_steps", type=int, help="stop after N batches (smoke tests)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a saved model on robot-selection data")
    evaluate.add_argument("--model", metavar="DIR", required=True, help="model directory (e.g. outputs/stage3/best)")
    evaluate.add_argument("--data", metavar="DIR", required=True, help="public dataset directory or .jsonl data")
    evaluate.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                          help="which split to score (splits are by task with --seed, as in training; default test)")
    evaluate.add_argument("--seed", type=int, default=0, help="split seed used in training (default 0)")
    evaluate.add_argument("--robots", metavar="FILE", default=None,
                          help="robots.yaml of the fleet to evaluate with (robots the model was not trained on are scored from their cards)")
    evaluate.add_argument("--no-images", dest="images", action="store_false",
                          help="score text only (no rendered scene), as `ember select` without --image does")
    evaluate.add_argument("--batch_size", type=int, default=32)
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> int:
    from ember_train.stage3 import Stage3Args, Stage3Trainer

    fields = {field.name for field in dataclasses.fields(Stage3Args)}
    values = _config_file_values(args.config, fields)
    # Flags left out are None: the YAML value, else the Stage3Args default applies.
    values.update({key: value for key, value in vars(args).items() if key in fields and value is not None})
    if not values.get("robot_data"):
        raise ValueError("--robot_data is required (on the command line or in --config)")
    summary = Stage3Trainer(Stage3Args(**values)).train()
    print(json.dumps({key: summary[key] for key in ("best_dir", "temperature", "val_ece_before", "val_ece_after")}, indent=2))
    return 0


def _config_file_values(path: str | None, fields: set[str]) -> dict[str, Any]:
    """The flag values of a --config YAML file (keys are flag names without dashes)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as stream:
        loaded = yaml.safe_load(stream) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of flag names to values")
    unknown = sorted(set(loaded) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; use the flag names, e.g. batch_size")
    return loaded


def _eval(args: argparse.Namespace) -> int:
    from ember_core.model.checkpoint import EmberModel
    from ember_core.robots_file import load_fleet
    from ember_train.data import load_records, split_records
    from ember_train.evaluate import score_records
    from ember_train.metrics import format_metrics

    bundle = EmberModel.from_pretrained(args.model, fleet=load_fleet(args.robots))
    records = load_records(args.data, bundle.fleet)
    splits = split_records(records, seed=args.seed)
    chosen = records if args.split == "all" else getattr(splits, args.split)
    scores = score_records(bundle, chosen, args.batch_size, use_images=args.images)
    metrics = scores.metrics(bundle.fleet.names, bundle.temperature)
    if args.json:
        print(json.dumps({"model": bundle.name, "split": args.split, "temperature": bundle.temperature, **metrics}, indent=2))
    else:
        print(format_metrics(metrics, bundle.fleet.names, f"Metrics of {bundle.name} on the {args.split} split ({len(chosen)} tasks):"))
    return 0
