"""`ember train`, `ember eval` and `ember calibrate` on the `ember` command line: their flags, and the train command.

Registered through the `ember.commands` entry point (setup.py), so the core CLI never imports training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

from ember_core.atomic import write_text_atomic
from ember_core.options import add_options, config_values, values_of
from ember_train.args import TrainArgs


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `train`, `eval` and `calibrate` on the `ember` command line."""
    train = commands.add_parser("train", help="train a model: Stage 1 (alignment), 2 (instruction tuning), "
                                              "3 (fleet selection) or all three")
    train.add_argument("--config", metavar="FILE.yaml",
                       help="YAML file of flag values (keys are the flag names without dashes); flags given here win")
    add_options(train, TrainArgs)
    train.set_defaults(handler=_train)

    from ember_train.calibrate_cli import add_calibrate_command
    from ember_train.eval_cli import add_eval_command

    add_eval_command(commands)
    add_calibrate_command(commands)


def train_args(args: argparse.Namespace) -> TrainArgs:
    """The run's settings: the --config file's values, the flags given on top (they win), the defaults for the rest."""
    values = _config_file_values(args.config)
    values.update(values_of(args, TrainArgs))
    settings = TrainArgs(**values)
    if settings.kfold and settings.stage != "3":
        raise ValueError(f"--kfold cross-validates Stage 3; it cannot run with --stage {settings.stage}")
    return settings


def _train(args: argparse.Namespace) -> int:
    from ember_train.distributed import DistributedContext, log_on_main_only
    from ember_train.pipeline import train_stages

    settings = train_args(args)
    with DistributedContext.from_environment(settings.distributed, settings.device) as ctx:
        log_on_main_only(ctx)
        if settings.kfold:
            _cross_validate(settings, ctx)
            return 0
        summary = train_stages(settings, ctx)
        if ctx.is_main:
            print(json.dumps(summary, indent=2))
    return 0


def _cross_validate(settings: TrainArgs, ctx) -> None:
    """Train one Stage 3 model per fold (outputs in <output_dir>/fold{i}/), write and print the held-out metrics."""
    import numpy as np  # only here: `ember robots list` builds this parser too and should start fast

    from ember_train.metrics import SUMMARY_KEYS
    from ember_train.pipeline import train_stages

    output = Path(settings.output_dir)
    folds, tfidf = [], []
    for fold in range(settings.kfold):
        summary = train_stages(dataclasses.replace(settings, fold=fold, output_dir=str(output / f"fold{fold}")), ctx)
        if ctx.is_main:  # the process that writes the results (and alone scores the baseline)
            folds.append({key: summary["test"][key] for key in SUMMARY_KEYS}
                         | {"num_samples": summary["test"]["num_samples"]})
            tfidf.append({key: summary["tfidf_test"][key] for key in SUMMARY_KEYS})
    if not ctx.is_main:
        return

    def mean_std(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {"mean": {k: float(np.mean([r[k] for r in rows])) for k in SUMMARY_KEYS},
                "std": {k: float(np.std([r[k] for r in rows])) for k in SUMMARY_KEYS}}

    result = {"folds": folds, **mean_std(folds), "tfidf_logistic": {"folds": tfidf, **mean_std(tfidf)}}
    write_text_atomic(output / "kfold.json", json.dumps(result, indent=2) + "\n")
    print(f"{settings.kfold}-fold cross-validation (grouped by task), held-out metrics, mean +- std "
          "(TF-IDF + logistic regression on the same folds beside them):")
    baseline = result["tfidf_logistic"]
    for key in SUMMARY_KEYS:
        print(f"  {key}: {result['mean'][key]:.4f} +- {result['std'][key]:.4f}   "
              f"(TF-IDF {baseline['mean'][key]:.4f} +- {baseline['std'][key]:.4f})")


def _config_file_values(path: str | None) -> dict:
    """The flag values of a --config YAML file (keys are flag names without dashes, `stage` included)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as stream:
        loaded = yaml.safe_load(stream) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of flag names to values")
    return config_values(loaded, TrainArgs, path)
