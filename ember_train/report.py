"""The evaluation report: the model and the baselines side by side, with bootstrap confidence intervals."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

# Evaluation runs on machines without a display; Agg must be chosen before pyplot is first imported.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ember_core.atomic import write_text_atomic  # noqa: E402
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD  # noqa: E402
from ember_train.metrics import SUMMARY_KEYS, compute_metrics, weighted_metrics  # noqa: E402
from ember_train.plots import save_figure  # noqa: E402

# (column header, compute_metrics key) of the report, in table order.
COLUMNS = (
    ("hit@1", "accuracy"),
    ("exact-set", "exact_set_accuracy"),
    ("set Jaccard", "multi_robot_iou"),
    ("macro-F1", "macro_f1"),
    ("mAP", "mean_average_precision"),
    ("top-1 ECE", "expected_calibration_error"),
    ("robot ECE", "robot_calibration_error"),
)
PLOTTED = (("hit@1", "accuracy"), ("set Jaccard", "multi_robot_iou"), ("macro-F1", "macro_f1"))
JSON_FILE = "report.json"
PNG_FILE = "report.png"
# Resamples scored per block: bounds the (block, n) weight arrays to a few MB whatever n is.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class SystemResult:
    """One system's point metrics (all of `compute_metrics`) and bootstrap intervals of the report keys."""

    name: str
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    samples: int
    seed: int
    alpha: float = 0.05


def bootstrap_ci(probs: np.ndarray, targets: np.ndarray, names: Sequence[str],
                 metric_keys: Sequence[str] = SUMMARY_KEYS, samples: int = 1000, seed: int = 0,
                 alpha: float = 0.05, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (1 - alpha) of metrics, grouped by task.

    Each resample draws n tasks (rows) with replacement; a task is the unit, and records are one
    per task already (`ember_train.data.merge_records`), so resampling rows resamples tasks. The
    same seed gives the same resamples for every system, so their intervals are paired.
    """
    unknown = [key for key in metric_keys if key not in SUMMARY_KEYS]
    if unknown:
        raise ValueError(f"no bootstrap for metric(s) {unknown}; choose from {', '.join(SUMMARY_KEYS)}")
    if samples < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need samples >= 1 and 0 < alpha < 1, got samples={samples}, alpha={alpha}")
    compute_metrics(probs, targets, names, threshold)  # validates shapes, ranges and names, with its messages
    n = np.asarray(probs).shape[0]
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    block = max(1, _BLOCK_CELLS // n)
    values: dict[str, list[np.ndarray]] = {key: [] for key in metric_keys}
    for start in range(0, samples, block):
        chunk = draws[start:start + block]
        offsets = (chunk + n * np.arange(chunk.shape[0])[:, None]).ravel()
        weights = np.bincount(offsets, minlength=chunk.shape[0] * n).reshape(chunk.shape[0], n)
        scored = weighted_metrics(probs, targets, weights, threshold)
        for key in metric_keys:
            values[key].append(scored[key])
    quantiles = (alpha / 2.0, 1.0 - alpha / 2.0)
    return {key: tuple(float(q) for q in np.quantile(np.concatenate(values[key]), quantiles)) for key in metric_keys}


def build_report(systems: Mapping[str, np.ndarray], targets: np.ndarray, names: Sequence[str],
                 samples: int = 1000, seed: int = 0, alpha: float = 0.05, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> list[SystemResult]:
    """Point metrics and paired bootstrap intervals for each system's (n, N) probabilities, in the given order."""
    if not systems:
        raise ValueError("build_report got no systems; pass {name: probabilities}")
    return [
        SystemResult(name, compute_metrics(probs, targets, names, threshold),
                     bootstrap_ci(probs, targets, names, SUMMARY_KEYS, samples, seed, alpha, threshold),
                     samples, seed, alpha)
        for name, probs in systems.items()
    ]


def _cell(result: SystemResult, key: str) -> str:
    low, high = result.intervals[key]
    return f"{result.metrics[key]:.3f} [{low:.3f}, {high:.3f}]"


def _table(results: Sequence[SystemResult]) -> list[list[str]]:
    return [[result.name] + [_cell(result, key) for _, key in COLUMNS] for result in results]


def _footnote(results: Sequence[SystemResult]) -> str:
    first = results[0]
    return (f"n = {int(first.metrics['num_samples'])} tasks; {1 - first.alpha:.0%} percentile bootstrap intervals "
            f"over {first.samples} resamples of tasks (seed {first.seed}). ECE (top-1 robot; every robot): lower is "
            f"better; the rest: higher.")


def format_report(results: Sequence[SystemResult], title: str) -> str:
    """A console table: one row per system, each cell "value [low, high]"."""
    if not results:
        raise ValueError("format_report got no results; build them with build_report")
    rows = [["system"] + [header for header, _ in COLUMNS]] + _table(results)
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = [title] + ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [_footnote(results)])


def plot_report(results: Sequence[SystemResult], path: str | os.PathLike, title: str,
                extra_lines: Sequence[str] = ()) -> Path:
    """One PNG page: grouped bars with interval error bars (hit@1, set Jaccard, macro-F1), the table, then `extra_lines`."""
    if not results:
        raise ValueError("plot_report got no results; build them with build_report")
    notes = [_footnote(results), *extra_lines]
    # Heights in inches: the bars, a table row per system plus its header, a text line per note.
    heights = [5.5, 0.35 * (len(results) + 1) + 0.2, 0.17 * len(notes) + 0.2]
    fig = plt.figure(figsize=(15.0, sum(heights) + 0.8), layout="constrained")
    try:
        grid = fig.add_gridspec(3, 1, height_ratios=heights)
        bars = fig.add_subplot(grid[0])
        width = 0.8 / len(results)
        centres = np.arange(len(PLOTTED))
        colours = plt.get_cmap("tab10").colors
        for i, result in enumerate(results):
            values = np.array([result.metrics[key] for _, key in PLOTTED])
            low = np.array([result.intervals[key][0] for _, key in PLOTTED])
            high = np.array([result.intervals[key][1] for _, key in PLOTTED])
            # Clip at 0: an interval's ends bracket the point estimate, but float noise may not.
            errors = np.maximum(np.stack([values - low, high - values]), 0.0)
            x = centres - 0.4 + width * (i + 0.5)
            bars.bar(x, values, width, yerr=errors, capsize=3, label=result.name, color=colours[i % len(colours)],
                     edgecolor="black", linewidth=0.5)
            for xi, value in zip(x, values):
                bars.text(xi, 0.015, f"{value:.2f}", ha="center", va="bottom", fontsize=8, rotation=90, color="white")
        bars.set_xticks(centres, labels=[header for header, _ in PLOTTED], fontsize=11)
        bars.set_ylim(0.0, 1.05)
        bars.set_ylabel("score (higher is better)")
        bars.grid(axis="y", alpha=0.3)
        bars.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9)
        bars.set_title(f"Point estimates with {1 - results[0].alpha:.0%} bootstrap intervals")

        table_ax = fig.add_subplot(grid[1])
        table_ax.axis("off")
        table = table_ax.table(cellText=_table(results), colLabels=["system"] + [h for h, _ in COLUMNS],
                               loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.auto_set_column_width(list(range(len(COLUMNS) + 1)))
        table.scale(1.0, 1.4)

        notes_ax = fig.add_subplot(grid[2])
        notes_ax.axis("off")
        notes_ax.text(0.0, 1.0, "\n".join(notes), ha="left", va="top", fontsize=9, family="monospace",
                      transform=notes_ax.transAxes, wrap=True)
        fig.suptitle(title, fontsize=15, fontweight="bold")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def _json_number(value: float) -> float | None:
    # JSON has no NaN; a metric that cannot be computed is written as null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_report(results: Sequence[SystemResult], directory: str | os.PathLike, title: str,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write `report.json` (every metric, interval, n, seed, samples and `extra`) and `report.png`; return the JSON."""
    if not results:
        raise ValueError("write_report got no results; build them with build_report")
    settings = {(r.samples, r.seed, r.alpha, r.metrics["num_samples"]) for r in results}
    if len(settings) != 1:
        raise ValueError(f"results were bootstrapped with different (samples, seed, alpha, n): {sorted(settings)}; "
                         f"build them in one build_report call")
    extra = dict(extra or {})
    report = {
        "title": title,
        "n": int(results[0].metrics["num_samples"]),
        "samples": results[0].samples,
        "seed": results[0].seed,
        "confidence": 1.0 - results[0].alpha,
        "columns": {header: key for header, key in COLUMNS},
        "systems": [
            {"name": r.name,
             "metrics": {key: _json_number(value) for key, value in r.metrics.items()},
             "intervals": {key: [low, high] for key, (low, high) in r.intervals.items()}}
            for r in results
        ],
        "extra": extra,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / JSON_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    lines = []
    for key, value in extra.items():
        # A mapping (e.g. baseline -> description) reads better one entry a line.
        lines += [f"{key}:", *(f"  {k}: {v}" for k, v in value.items())] if isinstance(value, Mapping) else [f"{key}: {value}"]
    plot_report(results, directory / PNG_FILE, title, lines)
    return report
