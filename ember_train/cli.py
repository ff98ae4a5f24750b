"""`ember train` and `ember eval`: argument parsing (seed flag names) and the commands behind them."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import yaml

if TYPE_CHECKING:
    import numpy as np

    from ember_core.fleet import Fleet
    from ember_core.model.checkpoint import EmberModel
    from ember_train.data import TaskRecord

STAGES = (3,)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `train` and `eval` on the `ember` command line."""
    train = commands.add_parser("train", help="train a model stage (Stage 3: fleet selection)")
    train.add_argument("--config", metavar="FILE.yaml",
                       help="YAML file of flag values (keys are the flag names without dashes); flags given here win")
    train.add_argument("--stage", type=int, choices=STAGES, required=True, help="training stage to run")
    train.add_argument("--robot_data", metavar="DIR", help="public dataset directory, a .jsonl file, or a directory of .jsonl files")
    train.add_argument("--output_dir", help="where stage3/ (checkpoints, visualizations) is written")
    train.add_argument("--model_config", help="model preset to build: embervlm-37m (default), embervlm-edge, tiny")
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
    train.add_argument("--head_lr_multiplier", type=float, help="robot head learning rate = learning_rate x this (default 10)")
    train.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    train.add_argument("--max_steps", type=int, help="stop after N batches (smoke tests)")
    train.add_argument("--kfold", type=int, help="cross-validate: train K models, each tested on one fold of tasks")
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
    evaluate.add_argument("--report", metavar="DIR",
                          help="also score the baselines (ember_train.baselines) on the same tasks and write "
                               "report.json and report.png, with bootstrap intervals, into DIR")
    evaluate.add_argument("--train_data", metavar="DIR",
                          help="with --report: data whose train split (by --seed) fits the baselines (default: --data); "
                               "give the training data when --data is another data set or --split is all")
    evaluate.add_argument("--bootstrap_samples", type=int, default=1000,
                          help="with --report: bootstrap resamples of the tasks (default 1000)")
    evaluate.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> int:
    from ember_train.stage3 import Stage3Args, Stage3Trainer

    fields = {field.name for field in dataclasses.fields(Stage3Args)}
    values = _config_file_values(args.config, fields)
    # Flags left out are None: the YAML value, else the Stage3Args default applies.
    values.update({key: value for key, value in vars(args).items() if key in fields and value is not None})
    if not values.get("robot_data"):
        raise ValueError("--robot_data is required (on the command line or in --config)")
    if values.get("kfold"):
        return _cross_validate(values, Stage3Args, Stage3Trainer)
    summary = Stage3Trainer(Stage3Args(**values)).train()
    print(json.dumps({key: summary[key] for key in ("best_dir", "temperature", "val_ece_before", "val_ece_after")}, indent=2))
    return 0


CV_KEYS = ("accuracy", "exact_set_accuracy", "multi_robot_iou", "macro_f1", "mean_average_precision",
           "expected_calibration_error")


def _cross_validate(values: dict[str, Any], args_type, trainer_type) -> int:
    """Train one model per fold (outputs in <output_dir>/fold{i}/) and summarise the held-out metrics."""
    import numpy as np  # only here: `ember robots list` builds this parser too and should start fast

    output = Path(values.get("output_dir") or "outputs")
    folds = []
    for fold in range(values["kfold"]):
        summary = trainer_type(args_type(**{**values, "fold": fold, "output_dir": str(output / f"fold{fold}")})).train()
        folds.append({key: summary["test"][key] for key in CV_KEYS} | {"num_samples": summary["test"]["num_samples"]})
    result = {"folds": folds, "mean": {k: float(np.mean([f[k] for f in folds])) for k in CV_KEYS},
              "std": {k: float(np.std([f[k] for f in folds])) for k in CV_KEYS}}
    output.mkdir(parents=True, exist_ok=True)
    (output / "kfold.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{values['kfold']}-fold cross-validation (grouped by task), held-out metrics, mean +- std:")
    for key in CV_KEYS:
        print(f"  {key}: {result['mean'][key]:.4f} +- {result['std'][key]:.4f}")
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

    if args.train_data and not args.report:
        raise ValueError("--train_data only chooses what the baselines of --report are fitted on; add --report DIR")
    bundle = EmberModel.from_pretrained(args.model, fleet=load_fleet(args.robots))
    records = load_records(args.data, bundle.fleet)
    splits = split_records(records, seed=args.seed)
    chosen = records if args.split == "all" else getattr(splits, args.split)
    # Checked before scoring, so a wrong --train_data fails at once.
    baseline_train = _baseline_training_records(args, bundle.fleet, chosen) if args.report else []
    scores = score_records(bundle, chosen, args.batch_size, use_images=args.images)
    metrics = scores.metrics(bundle.fleet.names, bundle.temperature)
    table = ""
    if args.report:
        table = _eval_report(args, bundle, chosen, baseline_train, scores.probabilities(bundle.temperature), scores.targets)
    if args.json:
        report = {"report": str(Path(args.report) / "report.json")} if args.report else {}
        print(json.dumps({"model": bundle.name, "split": args.split, "temperature": bundle.temperature, **metrics, **report},
                         indent=2))
    else:
        print(format_metrics(metrics, bundle.fleet.names, f"Metrics of {bundle.name} on the {args.split} split ({len(chosen)} tasks):"))
        if table:
            print(f"\n{table}")
    return 0


def _baseline_training_records(args: argparse.Namespace, fleet: Fleet, chosen: Sequence[TaskRecord]) -> list[TaskRecord]:
    """The train split (by --seed) of --train_data (default --data), less any task among the scored ones."""
    import sys

    from ember_train.data import load_records, split_records, task_key

    train_data = args.train_data or args.data
    scored = {task_key(record.task) for record in chosen}
    train_split = split_records(load_records(train_data, fleet), seed=args.seed).train
    # A baseline fitted on a task it is then scored on would look better than it is.
    train = [record for record in train_split if task_key(record.task) not in scored]
    if not train:
        raise ValueError(
            f"--train_data {train_data}: all {len(train_split)} tasks of its train split (seed {args.seed}) are among "
            f"the scored tasks, so the baselines would be scored on what they were fitted on; pass --train_data "
            f"with the training data (e.g. the public dataset directory) or score --split test")
    if len(train) < len(train_split):
        print(f"ember eval: left {len(train_split) - len(train)} scored tasks out of the baselines' training data",
              file=sys.stderr)
    return train


def _eval_report(args: argparse.Namespace, bundle: EmberModel, chosen: Sequence[TaskRecord],
                 train: Sequence[TaskRecord], probs: np.ndarray, targets: np.ndarray) -> str:
    """Score every baseline on the evaluated tasks, write report.json + report.png into --report; return the table."""
    import os
    import platform
    import shlex
    import time

    import torch

    from ember_train.baselines import BASELINES
    from ember_train.report import build_report, format_report, write_report

    started = time.perf_counter()
    systems = {f"model {bundle.name}": probs}
    for name, baseline in BASELINES.items():
        systems[name] = baseline.run(train, chosen, bundle.fleet, args.seed)
    results = build_report(systems, targets, bundle.fleet.names, samples=args.bootstrap_samples, seed=args.seed)
    flags = {"--model": args.model, "--data": args.data, "--split": args.split, "--seed": args.seed,
             "--robots": args.robots, "--train_data": args.train_data, "--report": args.report,
             "--bootstrap_samples": args.bootstrap_samples}
    command = " ".join(["ember eval"] + [f"{flag} {shlex.quote(str(value))}" for flag, value in flags.items()
                                         if value is not None] + ([] if args.images else ["--no-images"]))
    extra = {
        "command": command,
        "machine": f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__}",
        "data": f"{args.data}, {args.split} split (seed {args.seed}): {len(chosen)} tasks",
        "baselines fitted on": f"{args.train_data or args.data}, train split (seed {args.seed}): {len(train)} tasks",
        "model": f"{bundle.name} (sha {bundle.sha[:12]}), temperature {bundle.temperature:g}, "
                 f"{'with' if args.images else 'without'} rendered scenes",
        "robots": ", ".join(bundle.fleet.names),
        "baselines": {name: baseline.description for name, baseline in BASELINES.items()},
        "seconds for baselines and bootstrap": round(time.perf_counter() - started, 2),
    }
    title = f"{bundle.name} vs baselines: {args.split} split of {Path(args.data).name} ({len(chosen)} tasks)"
    write_report(results, args.report, title, extra)
    return format_report(results, title)
