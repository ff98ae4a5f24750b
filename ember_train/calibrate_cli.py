"""`ember calibrate`: fit a model's confidence calibration on out-of-fold scores and development sets.

One temperature fitted on a run's few validation tasks leaves the top robot's confidence far from its
accuracy. This fits `ember_core.calibration` on every public task instead, each scored by the
cross-validation model that did not train on it (`ember train --kfold K` writes those scores), plus
development task sets scored by the model itself, and writes the result into the model's
processor_config.json. How well that holds on tasks the fit did not see is measured by cross-fitting:
each fold's scores are calibrated by a fit on the other folds (and the development sets).
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ember_core.calibration import Calibration
    from ember_train.evaluate import Scores

REPORT_FILE = "calibration.json"
FOLD_PATTERN = re.compile(r"fold(\d+)$")


def add_calibrate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("calibrate", help="fit a model's confidence calibration on cross-validation scores")
    parser.add_argument("--model", metavar="DIR", required=True,
                        help="model directory whose processor_config.json receives the calibration")
    parser.add_argument("--out_of_fold", "--out-of-fold", metavar="DIR", required=True,
                        help="output directory of `ember train --kfold K` run with the model's recipe "
                             "(reads its fold*/stage3/test_scores.json)")
    parser.add_argument("--dev", metavar="TASKS.jsonl[@ROBOTS.yaml]", action="append", default=[],
                        help="a development task set scored by the model, text only, with its fleet's robots.yaml "
                             "after @ (default fleet otherwise); repeatable. Never pass a set you report on")
    parser.add_argument("--report", metavar="DIR",
                        help="write calibration.json and reliability diagrams of the out-of-fold tasks into DIR")
    parser.set_defaults(handler=_calibrate)


@dataclass
class ScoredSet:
    """Scores with where they came from, for the report."""

    name: str
    scores: Scores


def _calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from ember_core.processor import ProcessorConfig
    from ember_train.calibration import fit_calibration

    folds, fold_calibrations = _out_of_fold(Path(args.out_of_fold))
    dev = [_dev_scores(args.model, spec) for spec in args.dev]
    dev_logits, dev_targets = [d.scores.logits for d in dev], [d.scores.targets for d in dev]
    cross_fitted = []
    for k in range(len(folds)):
        others = [fold.scores for j, fold in enumerate(folds) if j != k]
        fitted = fit_calibration([s.logits for s in others] + dev_logits, [s.targets for s in others] + dev_targets)
        cross_fitted.append(folds[k].scores.probabilities(fitted))
    calibration = fit_calibration([f.scores.logits for f in folds] + dev_logits,
                                  [f.scores.targets for f in folds] + dev_targets)
    targets = np.concatenate([f.scores.targets for f in folds])
    rows = {
        "raw sigmoid": np.concatenate([f.scores.probabilities() for f in folds]),
        "each fold's validation fit": np.concatenate([f.scores.probabilities(c) for f, c in zip(folds, fold_calibrations)]),
        "cross-fitted (this command's fit)": np.concatenate(cross_fitted),
    }
    summary = {name: calibration_summary(probs, targets) for name, probs in rows.items()}
    config = ProcessorConfig.load(Path(args.model))
    config.calibration = calibration
    config.save(args.model)
    print(f"Calibration fitted on {len(targets)} out-of-fold tasks ({len(folds)} folds)"
          + "".join(f" + {d.name} ({len(d.scores.targets)} tasks)" for d in dev) + f": {calibration.describe()}")
    print(f"Written to {Path(args.model) / 'processor_config.json'}")
    print(format_summary(summary, f"Out-of-fold public tasks ({len(targets)}):"))
    if args.report:
        _write_report(args, calibration, summary, rows, targets, dev)
    return 0


def calibration_summary(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """hit@1, the top robot's mean confidence, top-1 and every-robot ECE, and set Jaccard of (tasks, robots) confidences."""
    import numpy as np

    from ember_train.metrics import calibration_checks, weighted_metrics

    scored = weighted_metrics(probs, targets, np.ones((1, len(probs)), dtype=np.int64))
    keys = ("accuracy", "expected_calibration_error", "robot_calibration_error", "multi_robot_iou")
    checks = calibration_checks(probs, targets)
    return ({key: float(scored[key][0]) for key in keys} | {"mean_top_confidence": float(np.max(probs, axis=1).mean())}
            | {"top1_ece_if_calibrated": checks["top-1 ECE"].if_calibrated, "top1_ece_p": checks["top-1 ECE"].p_value,
               "robot_ece_if_calibrated": checks["robot ECE"].if_calibrated, "robot_ece_p": checks["robot ECE"].p_value})


def format_summary(summary: dict[str, dict[str, float]], title: str) -> str:
    """The summary's table; each ECE with its p-value against a calibrated model's (ember_train.metrics.calibration_check)."""
    header = f"  {'':<36}{'hit@1':>8}{'top conf':>10}{'top-1 ECE (p)':>15}{'robot ECE (p)':>15}{'set Jaccard':>13}"
    lines = [title, header]
    for name, s in summary.items():
        lines.append(f"  {name:<36}{s['accuracy']:>8.3f}{s['mean_top_confidence']:>10.3f}"
                     f"{s['expected_calibration_error']:>8.3f} ({s['top1_ece_p']:.2f})"
                     f"{s['robot_calibration_error']:>8.3f} ({s['robot_ece_p']:.2f}){s['multi_robot_iou']:>13.3f}")
    lines.append("  p: the share of 1000 draws in which a calibrated model with the same confidences shows an ECE at "
                 "least as large")
    lines.append("  a calibrated model's mean ECE on these tasks, top-1 / robot: "
                 + "; ".join(f"{name} {s['top1_ece_if_calibrated']:.3f} / {s['robot_ece_if_calibrated']:.3f}"
                             for name, s in summary.items()))
    return "\n".join(lines)


def _out_of_fold(directory: Path) -> tuple[list[ScoredSet], list[Calibration]]:
    """Each fold's held-out scores and the calibration its own run fitted, in fold order."""
    from ember_core.processor import ProcessorConfig
    from ember_train.evaluate import TEST_SCORES_FILE, Scores

    folds = sorted((int(m.group(1)), path) for path in directory.glob("fold*")
                   if (m := FOLD_PATTERN.match(path.name)) and (path / "stage3" / TEST_SCORES_FILE).is_file())
    if len(folds) < 2:
        raise ValueError(f"{directory}: found {len(folds)} fold*/stage3/{TEST_SCORES_FILE}; run "
                         f"`ember train --kfold 5 --output_dir {directory}` with the model's recipe first")
    scored = [ScoredSet(path.name, Scores.load(path / "stage3" / TEST_SCORES_FILE)) for _, path in folds]
    widths = {fold.scores.logits.shape[1] for fold in scored}
    if len(widths) != 1:
        raise ValueError(f"{directory}: the folds were scored on fleets of different sizes {sorted(widths)}")
    return scored, [ProcessorConfig.load(path / "stage3" / "best").calibration for _, path in folds]


def _dev_scores(model: str, spec: str) -> ScoredSet:
    """The model's text-only scores of a TASKS.jsonl[@ROBOTS.yaml] development set."""
    from ember_core.pretrained import load_pretrained
    from ember_core.robots_file import load_fleet
    from ember_train.data import load_records
    from ember_train.evaluate import score_records

    tasks, _, robots = spec.partition("@")
    fleet = load_fleet(robots or None)
    loaded, processor = load_pretrained(model, fleet=fleet)
    records = load_records(tasks, fleet)
    return ScoredSet(Path(tasks).name, score_records(loaded, processor, records, use_images=False))


def _write_report(args: argparse.Namespace, calibration: Calibration, summary: dict[str, dict[str, float]],
                  rows: dict[str, np.ndarray], targets: np.ndarray, dev: list[ScoredSet]) -> None:
    from ember_core.atomic import write_text_atomic
    from ember_train.plots import plot_reliability

    report = Path(args.report)
    plots = {"raw sigmoid": "reliability_raw.png", "each fold's validation fit": "reliability_fold_fit.png",
             "cross-fitted (this command's fit)": "reliability_cross_fitted.png"}
    for name, file in plots.items():
        plot_reliability(rows[name], targets, report / file, f"Out-of-fold public tasks, {name}")
    document = {"calibration": asdict(calibration), "out_of_fold": args.out_of_fold,
                "dev": {d.name: len(d.scores.targets) for d in dev}, "out_of_fold_tasks": len(targets),
                "summary": summary, "plots": plots}
    write_text_atomic(report / REPORT_FILE, json.dumps(document, indent=2) + "\n")
    print(f"Report: {report / REPORT_FILE} and {', '.join(plots.values())}")
