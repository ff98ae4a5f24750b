"""`ember eval`: score a saved model on robot-selection data, optionally beside the baselines in a report."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ember_train.public_data import PUBLIC_DATA

if TYPE_CHECKING:
    import numpy as np

    from ember_core.model.vlm import EmberVLM
    from ember_core.processor import EmberProcessor
    from ember_train.data import TaskRecord
    from ember_train.metrics import CalibrationCheck

SPLITS = ("train", "val", "test", "all")


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a saved model on robot-selection data")
    evaluate.add_argument("--model", metavar="DIR", default=None,
                          help="model directory, e.g. outputs/stage3/best (default: the model shipped with Ember)")
    evaluate.add_argument("--data", metavar="DIR", default=str(PUBLIC_DATA),
                          help="public dataset directory or .jsonl data (default: $EMBER_DATA, %(default)s)")
    evaluate.add_argument("--split", choices=SPLITS, default="test",
                          help="which split to score (splits are by task with --seed, as in training; default %(default)s)")
    evaluate.add_argument("--seed", type=int, default=0, help="split seed used in training (default %(default)s)")
    evaluate.add_argument("--robots", metavar="FILE", default=None,
                          help="robots.yaml of the fleet to evaluate with (robots the model was not trained on are scored from their cards)")
    evaluate.add_argument("--no-images", dest="images", action="store_false",
                          help="score text only (no rendered scene), as `ember select` without --image does")
    evaluate.add_argument("--batch_size", type=int, default=32, help="tasks per forward pass (default %(default)s)")
    evaluate.add_argument("--explanations", action="store_true",
                          help="also write every task's reasoning (and team and plan) and measure them: validity, "
                               "Step 4 faithfulness, Step 3 fact precision, Step 1 task reference, and on data with "
                               "teams team Jaccard, false teams, plan validity and coverage (ember_train/explanation_eval.py)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--report", metavar="DIR",
                          help="also score the baselines (ember_train.baselines) on the same tasks and write "
                               "report.json and report.png, with bootstrap intervals, and the model's reliability "
                               "diagrams (reliability.png), into DIR")
    evaluate.add_argument("--train_data", metavar="DIR",
                          help="with --report: data whose train split (by --seed) fits the baselines "
                               "(default: the public data set, $EMBER_DATA)")
    evaluate.add_argument("--bootstrap_samples", type=int, default=1000,
                          help="with --report: bootstrap resamples of the tasks (default %(default)s)")
    evaluate.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ember_core.pretrained import load_pretrained
    from ember_core.robots_file import load_fleet
    from ember_train.data import load_records, split_records
    from ember_train.evaluate import score_records
    from ember_train.metrics import calibration_checks, format_metrics

    if args.train_data and not args.report:
        raise ValueError("--train_data only chooses what the baselines of --report are fitted on; add --report DIR")
    model, processor = load_pretrained(args.model, fleet=load_fleet(args.robots))
    fleet, calibration = processor.fleet, processor.config.calibration
    records = load_records(args.data, fleet)
    splits = split_records(records, seed=args.seed)
    chosen = records if args.split == "all" else getattr(splits, args.split)
    # Checked before scoring, so a wrong --train_data fails at once.
    baseline_train = _baseline_training_records(args, processor, chosen) if args.report else []
    scores = score_records(model, processor, chosen, args.batch_size, use_images=args.images)
    metrics = scores.metrics(fleet.names, calibration)
    probabilities = scores.probabilities(calibration)
    checks = calibration_checks(probabilities, scores.targets, seed=args.seed)
    explanations = {}
    if args.explanations:
        from ember_core.selector import Selector
        from ember_train.explanation_eval import explain_records, explanation_metrics

        selector = Selector((model, processor), fleet=fleet)
        explanations = explanation_metrics(explain_records(selector, chosen, args.images), chosen, fleet)
    table = ""
    if args.report:
        table = _eval_report(args, model, processor, chosen, baseline_train, probabilities, scores.targets,
                             explanations, checks)
    if args.json:
        report = {"report": str(Path(args.report) / "report.json")} if args.report else {}
        extra = {"explanations": explanations} if explanations else {}
        print(json.dumps({"model": model.name, "split": args.split, "calibration": asdict(calibration), **metrics, **report,
                          "calibration_check": {name: asdict(check) for name, check in checks.items()}, **extra},
                         indent=2))
    else:
        print(format_metrics(metrics, fleet.names, f"Metrics of {model.name} on the {args.split} split ({len(chosen)} tasks):"))
        print("\n".join(f"Calibration check, {name}: {check.describe()}" for name, check in checks.items()))
        if explanations:
            from ember_train.explanation_eval import format_explanation_metrics

            print("\n" + format_explanation_metrics(explanations, "Explanations (reasoning, team and plan):"))
        if table:
            print(f"\n{table}")
    return 0


def _baseline_training_records(args: argparse.Namespace, processor: EmberProcessor,
                               chosen: Sequence[TaskRecord]) -> list[TaskRecord]:
    """The train split (by --seed) of --train_data (default: the public data set), less any task among the scored ones."""
    from ember_train.data import load_records, split_records, task_key

    train_data = args.train_data or str(PUBLIC_DATA)
    scored = {task_key(record.task) for record in chosen}
    train_split = split_records(load_records(train_data, processor.fleet), seed=args.seed).train
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


def _eval_report(args: argparse.Namespace, model: EmberVLM, processor: EmberProcessor, chosen: Sequence[TaskRecord],
                 train: Sequence[TaskRecord], probs: np.ndarray, targets: np.ndarray, explanations: dict[str, float],
                 checks: dict[str, CalibrationCheck]) -> str:
    """Score every baseline on the evaluated tasks, write report.json + report.png into --report (with the model's
    explanation figures when measured); return the table."""
    import os
    import platform
    import shlex
    import time

    import torch

    from ember_train.baselines import BASELINES
    from ember_train.plots import RELIABILITY_FILE, plot_reliability
    from ember_train.report import build_report, format_report, write_report

    started = time.perf_counter()
    systems = {f"model {model.name}": probs}
    for name, baseline in BASELINES.items():
        systems[name] = baseline.run(train, chosen, processor.fleet, args.seed)
    results = build_report(systems, targets, processor.fleet.names, samples=args.bootstrap_samples, seed=args.seed)
    flags = {"--model": args.model, "--data": args.data, "--split": args.split, "--seed": args.seed,
             "--robots": args.robots, "--train_data": args.train_data, "--report": args.report,
             "--bootstrap_samples": args.bootstrap_samples}
    command = " ".join(["ember eval"] + [f"{flag} {shlex.quote(str(value))}" for flag, value in flags.items()
                                         if value is not None] + ([] if args.images else ["--no-images"])
                       + (["--explanations"] if args.explanations else []))
    extra = {
        "command": command,
        "machine": f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__}",
        "data": f"{args.data}, {args.split} split (seed {args.seed}): {len(chosen)} tasks",
        "baselines fitted on": f"{args.train_data or PUBLIC_DATA}, train split (seed {args.seed}): {len(train)} tasks",
        "model": f"{model.name} (sha {model.sha[:12]}), calibration ({processor.config.calibration.describe()}), "
                 f"{'with' if args.images else 'without'} rendered scenes",
        "robots": ", ".join(processor.fleet.names),
        "baselines": {name: baseline.description for name, baseline in BASELINES.items()},
        "seconds for baselines and bootstrap": round(time.perf_counter() - started, 2),
        "calibration check of the model": {name: asdict(check) for name, check in checks.items()},
        **({"explanations of the model": explanations} if explanations else {}),
    }
    title = f"{model.name} vs baselines: {args.split} split of {Path(args.data).name} ({len(chosen)} tasks)"
    write_report(results, args.report, title, extra)
    plot_reliability(probs, targets, Path(args.report) / RELIABILITY_FILE, f"{model.name}: {args.split} split of "
                     f"{Path(args.data).name}, {'with' if args.images else 'without'} rendered scenes")
    return format_report(results, title)
