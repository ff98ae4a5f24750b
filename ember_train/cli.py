"""`ember train`, `ember eval` and `ember calibrate` on the `ember` command line: their flags, and the train command.

Registered through the `ember.commands` entry point (setup.py), so the core CLI never imports training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ember_core.options import add_options, values_of
from ember_train.args import Stage3Args


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `train`, `eval` and `calibrate` on the `ember` command line."""
    train = commands.add_parser("train", help="train a model (Stage 3: fleet selection)")
    train.add_argument("--config", metavar="FILE.yaml",
                       help="YAML file of flag values (keys are the flag names without dashes); flags given here win")
    add_options(train, Stage3Args)
    train.set_defaults(handler=_train)

    from ember_train.calibrate_cli import add_calibrate_command
    from ember_train.eval_cli import add_eval_command

    add_eval_command(commands)
    add_calibrate_command(commands)


def _train(args: argparse.Namespace) -> int:
    from ember_train.stage3 import Stage3Trainer

    values = _config_file_values(args.config)
    # Flags left out are None: the YAML value, else the Stage3Args default applies.
    values.update(values_of(args, Stage3Args))
    if values.get("kfold"):
        return _cross_validate(values, Stage3Trainer)
    summary = Stage3Trainer(Stage3Args(**values)).train()
    print(json.dumps({key: summary[key] for key in ("best_dir", "calibration", "val_ece_before", "val_ece_after", "test")},
                     indent=2))
    return 0


def _cross_validate(values: dict[str, Any], trainer_type) -> int:
    """Train one model per fold (outputs in <output_dir>/fold{i}/) and summarise the held-out metrics."""
    import numpy as np  # only here: `ember robots list` builds this parser too and should start fast

    from ember_train.metrics import SUMMARY_KEYS

    output = Path(values.get("output_dir") or Stage3Args.output_dir)
    folds = []
    for fold in range(values["kfold"]):
        summary = trainer_type(Stage3Args(**{**values, "fold": fold, "output_dir": str(output / f"fold{fold}")})).train()
        folds.append({key: summary["test"][key] for key in SUMMARY_KEYS} | {"num_samples": summary["test"]["num_samples"]})
    result = {"folds": folds, "mean": {k: float(np.mean([f[k] for f in folds])) for k in SUMMARY_KEYS},
              "std": {k: float(np.std([f[k] for f in folds])) for k in SUMMARY_KEYS}}
    output.mkdir(parents=True, exist_ok=True)
    (output / "kfold.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{values['kfold']}-fold cross-validation (grouped by task), held-out metrics, mean +- std:")
    for key in SUMMARY_KEYS:
        print(f"  {key}: {result['mean'][key]:.4f} +- {result['std'][key]:.4f}")
    return 0


def _config_file_values(path: str | None) -> dict[str, Any]:
    """The flag values of a --config YAML file (keys are flag names without dashes)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as stream:
        loaded = yaml.safe_load(stream) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of flag names to values")
    unknown = sorted(set(loaded) - set(Stage3Args.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; use the flag names, e.g. batch_size")
    return loaded
