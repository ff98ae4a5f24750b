"""Headless evaluation plots (confusion, radar, reliability, training curves, one-page report), written atomically."""
from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

# Training runs on nodes without a display; Agg must be chosen before pyplot is first imported.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ember_train.metrics import (  # noqa: E402
    ECE_BINS,
    PER_ROBOT_STATS,
    bin_accuracy_ranges,
    expected_calibration_error,
    metric_key,
    reliability_bins,
)

DPI = 110
RELIABILITY_FILE = "reliability.png"
STAT_COLOURS = {"precision": "tab:blue", "recall": "tab:orange", "f1": "tab:green"}
SUMMARY_KEYS = (
    "accuracy",
    "macro_f1",
    "exact_set_accuracy",
    "multi_robot_iou",
    "mean_average_precision",
    "expected_calibration_error",
    "num_samples",
)


def _wrap(name: str, width: int = 11) -> str:
    # Fleet names such as "Robot with Wheels" overlap their neighbours on one line.
    return textwrap.fill(name, width)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as PNG via a temp file in the target directory, so readers never see a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would survive os.replace, and other users of a shared run dir could
    # not open the plots. open("xb") honours the umask and still refuses to clobber another writer.
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return target


def _robot_stat(metrics: Mapping[str, float], name: str, stat: str) -> float:
    key = f"{metric_key(name)}_{stat}"
    if key not in metrics:
        raise ValueError(f"metrics has no {key!r}; pass the dict compute_metrics returned for these robot names")
    return float(metrics[key])


def _cell_text(value: float) -> str:
    # Misses shared over a multi-robot gold set make fractional cells; whole counts stay integers.
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def _draw_confusion(fig: Figure, ax: Axes, matrix: np.ndarray, names: Sequence[str]) -> None:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix shape {m.shape} does not fit {len(names)} robot names")
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=max(m.max(), 1e-9))
    ticks = np.arange(len(names))
    labels = [_wrap(n) for n in names]
    ax.set_xticks(ticks, labels=labels, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=labels)
    ax.set_xlabel("Top-1 prediction")
    ax.set_ylabel("Gold robot")
    light = m.max() / 2.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            colour = "white" if m[i, j] > light else "black"
            ax.text(j, i, _cell_text(m[i, j]), ha="center", va="center", color=colour, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _draw_radar(ax: Axes, metrics: Mapping[str, float], names: Sequence[str]) -> None:
    angles = np.linspace(0.0, 2.0 * np.pi, len(names), endpoint=False)
    closed = np.append(angles, angles[:1])
    for stat in PER_ROBOT_STATS:
        values = [_robot_stat(metrics, name, stat) for name in names]
        values.append(values[0])
        ax.plot(closed, values, color=STAT_COLOURS[stat], linewidth=1.8, marker="o", markersize=4, label=stat)
        ax.fill(closed, values, color=STAT_COLOURS[stat], alpha=0.08)
    ax.set_xticks(angles, labels=[_wrap(n) for n in names])
    ax.tick_params(axis="x", pad=12)
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], labels=["0.25", "0.5", "0.75", "1"], fontsize=8)
    # Put the radial scale between the first two spokes, away from the robot labels.
    ax.set_rlabel_position(180.0 / len(names))
    ax.legend(loc="upper right", bbox_to_anchor=(1.25, 1.12), fontsize=9)


def _draw_reliability(ax: Axes, confidences: np.ndarray, correct: np.ndarray, bins: int,
                      xlabel: str = "Confidence (top-1 probability)") -> float:
    """Bars of per-bin accuracy, the gap to the bin's mean confidence, each bin's sample count above it, and the
    range of accuracy a calibrated model with the same confidences shows in 90% of draws (`bin_accuracy_ranges`):
    a bar outside its range is more than sampling noise."""
    rb = reliability_bins(confidences, correct, bins)
    ece = expected_calibration_error(confidences, correct, bins)
    filled = rb.counts > 0
    left = rb.edges[:-1][filled]
    width = 1.0 / bins
    low, high = bin_accuracy_ranges(confidences, bins)
    ax.vlines(left + width / 2, low[filled], high[filled], color="black", linewidth=2.0, alpha=0.45, zorder=3,
              label="90% range if calibrated")
    ax.bar(left, rb.accuracy[filled], width=width, align="edge", color="tab:blue", edgecolor="black",
           linewidth=0.6, label="Accuracy")
    ax.bar(left, rb.confidence[filled] - rb.accuracy[filled], bottom=rb.accuracy[filled], width=width,
           align="edge", fill=False, edgecolor="tab:red", hatch="//", linewidth=0.6, label="Gap to confidence")
    tops = np.maximum(rb.accuracy[filled], rb.confidence[filled])
    for x, top, count in zip(left, tops, rb.counts[filled]):
        ax.text(x + width / 2, min(top + 0.01, 0.97), f"{int(count)}", ha="center", va="bottom", fontsize=7)
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="grey", label="Perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Accuracy (numbers: samples per bin)")
    ax.legend(loc="upper left", fontsize=9)
    return ece


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str | os.PathLike, title: str) -> Path:
    """Heat map of `metrics.confusion_matrix` (rows gold robot, columns top-1), each cell annotated."""
    size = 3.0 + 0.9 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    try:
        _draw_confusion(fig, ax, matrix, names)
        ax.set_title(title)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def plot_radar(metrics: Mapping[str, float], names: Sequence[str], path: str | os.PathLike, title: str) -> Path:
    """Polar chart of each robot's precision, recall and F1 (one spoke per robot, in fleet order)."""
    fig = plt.figure(figsize=(7.5, 7.0), layout="constrained")
    try:
        ax = fig.add_subplot(projection="polar")
        _draw_radar(ax, metrics, names)
        ax.set_title(title, pad=24)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def plot_calibration(
    confidences: np.ndarray, correct: np.ndarray, path: str | os.PathLike, title: str, bins: int = ECE_BINS
) -> Path:
    """Reliability diagram: per-bin accuracy against confidence, the diagonal, and the ECE in the title."""
    fig, ax = plt.subplots(figsize=(6.5, 6.0), layout="constrained")
    try:
        ece = _draw_reliability(ax, confidences, correct, bins)
        ax.set_title(f"{title}\nECE = {ece:.4f} ({bins} bins)")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def plot_reliability(probs: np.ndarray, targets: np.ndarray, path: str | os.PathLike, title: str,
                     bins: int = ECE_BINS) -> Path:
    """Two reliability diagrams of (tasks, robots) confidences: the top-1 robot's (correct = it suits the
    task) and every robot's (correct = that robot suits the task), each with its ECE and bin counts."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(targets).astype(bool)
    rows = np.arange(len(probs))
    top = probs.argmax(axis=1)
    fig, (top_ax, all_ax) = plt.subplots(1, 2, figsize=(12.0, 5.6), layout="constrained")
    try:
        top_ece = _draw_reliability(top_ax, probs[rows, top], gold[rows, top], bins)
        top_ax.set_title(f"Top-1 robot: ECE = {top_ece:.4f} ({len(probs)} tasks)")
        all_ece = _draw_reliability(all_ax, probs.ravel(), gold.ravel(), bins, "Confidence (every robot)")
        all_ax.set_title(f"Every robot: ECE = {all_ece:.4f} ({probs.size} task-robot pairs)")
        fig.suptitle(f"{title} ({bins} bins)")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for i, entry in enumerate(history):
        if key not in entry:
            continue
        if "step" not in entry:
            raise ValueError(f"history entry {i} ({dict(entry)}) has no 'step'; log every entry with its step")
        steps.append(float(entry["step"]))
        values.append(float(entry[key]))
    return steps, values


def _integer_steps(ax: Axes) -> None:
    """Ticks on whole steps only (a short run's default ticks would read 1.25, 1.5 ...)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, validation: str) -> Path:
    """Training loss (left) and validation accuracy / macro-F1 (right) against step; absent keys are skipped.

    `validation` says what was evaluated (split and sample count, e.g. "val split, 40 tasks") for the title.
    """
    # One step axis for both: an evaluation or two alone would span a fraction of a step.
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(12.0, 4.5), layout="constrained", sharex=True)
    try:
        steps, loss = _series(history, "loss")
        if steps:
            loss_ax.plot(steps, loss, color="tab:red", linewidth=1.2, label="loss")
            loss_ax.legend(loc="upper right")
        else:
            loss_ax.text(0.5, 0.5, "no loss logged yet", ha="center", va="center", transform=loss_ax.transAxes)
        loss_ax.set_title("Training loss")
        loss_ax.set_xlabel("Step")
        loss_ax.set_ylabel("Loss")
        plotted = False
        for key, colour in (("accuracy", "tab:blue"), ("macro_f1", "tab:green")):
            steps, values = _series(history, key)
            if steps:
                score_ax.plot(steps, values, color=colour, marker="o", markersize=3, label=key)
                plotted = True
        if plotted:
            score_ax.legend(loc="lower right")
        else:
            score_ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=score_ax.transAxes)
        score_ax.set_ylim(0.0, 1.0)
        score_ax.set_title(f"Validation accuracy and macro-F1 ({validation})")
        score_ax.set_xlabel("Step")
        score_ax.set_ylabel("Score")
        for ax in (loss_ax, score_ax):
            _integer_steps(ax)
            ax.grid(alpha=0.3)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def _draw_tables(summary_ax: Axes, robots_ax: Axes, metrics: Mapping[str, float], names: Sequence[str]) -> None:
    rows = [
        [key, f"{int(metrics[key])}" if key == "num_samples" else f"{metrics[key]:.4f}"]
        for key in SUMMARY_KEYS
        if key in metrics
    ]
    summary_ax.axis("off")
    summary_ax.set_title("Key metrics")
    table = summary_ax.table(cellText=rows, colLabels=["metric", "value"], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.5)

    cells = [[f"{_robot_stat(metrics, name, stat):.4f}" for stat in PER_ROBOT_STATS] for name in names]
    robots_ax.axis("off")
    robots_ax.set_title("Per-robot performance")
    table = robots_ax.table(cellText=cells, rowLabels=list(names), colLabels=["precision", "recall", "f1"],
                            loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.5)


def plot_final_report(
    metrics: Mapping[str, float],
    names: Sequence[str],
    matrix: np.ndarray,
    confidences: np.ndarray,
    correct: np.ndarray,
    path: str | os.PathLike,
    title: str,
) -> Path:
    """One page: key-metric and per-robot tables, then the confusion matrix, radar and reliability diagram."""
    fig = plt.figure(figsize=(19.0, 12.0), layout="constrained")
    try:
        grid = fig.add_gridspec(2, 3, height_ratios=[0.8, 1.6])
        _draw_tables(fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1:]), metrics, names)
        confusion_ax = fig.add_subplot(grid[1, 0])
        _draw_confusion(fig, confusion_ax, matrix, names)
        confusion_ax.set_title("Confusion matrix (gold x top-1)")
        radar_ax = fig.add_subplot(grid[1, 1], projection="polar")
        _draw_radar(radar_ax, metrics, names)
        radar_ax.set_title("Per-robot precision / recall / F1", pad=24)
        reliability_ax = fig.add_subplot(grid[1, 2])
        ece = _draw_reliability(reliability_ax, confidences, correct, ECE_BINS)
        reliability_ax.set_title(f"Reliability (ECE = {ece:.4f})")
        fig.suptitle(title, fontsize=16, fontweight="bold")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def plot_losses(history: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str) -> Path:
    """Training loss per step and validation loss at each evaluation (Stages 1-2, the explanation phase)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.5), layout="constrained")
    try:
        for key, colour, marker in (("loss", "tab:red", None), ("val_loss", "tab:blue", "o")):
            steps, values = _series(history, key)
            if steps:
                ax.plot(steps, values, color=colour, marker=marker, markersize=4, linewidth=1.2, label=key)
        ax.legend(loc="upper right")
        ax.set_title(title)
        ax.set_xlabel("Step")
        ax.set_ylabel("Loss")
        _integer_steps(ax)
        ax.grid(alpha=0.3)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)
