"""Every plot function writes a readable PNG atomically and leaves no temp file behind."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ember_train import plots
from ember_train.metrics import compute_metrics, confusion_matrix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["Drone", "Underwater Robot", "Humanoid", "Robot with Wheels", "Robot with Legs"]


@pytest.fixture(scope="module")
def evaluation():
    rng = np.random.default_rng(3)
    targets = (rng.random((60, 5)) < 0.2).astype(int)
    targets[np.arange(60), rng.integers(0, 5, 60)] = 1
    probs = np.clip(0.35 * targets + 0.65 * rng.random((60, 5)), 0.0, 1.0)
    top1 = probs.argmax(axis=1)
    return {
        "metrics": compute_metrics(probs, targets, NAMES),
        "matrix": confusion_matrix(probs, targets),
        "confidences": probs.max(axis=1),
        "correct": targets[np.arange(60), top1],
    }


def _assert_png(path, expected, min_size=(300, 250)):
    assert path == expected
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width >= min_size[0] and image.height >= min_size[1]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "temp file left behind"


def test_plot_confusion(tmp_path, evaluation):
    target = tmp_path / "confusion_matrix_epoch0.png"
    _assert_png(plots.plot_confusion(evaluation["matrix"], NAMES, target, "Confusion, epoch 0"), target)


def test_plot_radar(tmp_path, evaluation):
    target = tmp_path / "robot_radar_epoch0.png"
    _assert_png(plots.plot_radar(evaluation["metrics"], NAMES, target, "Robots, epoch 0"), target)


def test_plot_calibration(tmp_path, evaluation):
    target = tmp_path / "calibration_epoch0.png"
    path = plots.plot_calibration(evaluation["confidences"], evaluation["correct"], target, "Calibration, epoch 0")
    _assert_png(path, target)


def test_plot_training_curves_skips_missing_keys(tmp_path):
    history = [{"step": s, "loss": 1.0 / (1 + s)} for s in range(0, 50, 5)]
    history += [{"step": 20, "accuracy": 0.6, "macro_f1": 0.5}, {"step": 40, "accuracy": 0.7}]
    target = tmp_path / "training_curves.png"
    _assert_png(plots.plot_training_curves(history, str(target), "val split, 7 tasks"), target)
    empty = tmp_path / "empty" / "training_curves.png"
    _assert_png(plots.plot_training_curves([], empty, "val split, 7 tasks"), empty)


@pytest.mark.parametrize("draw", [
    lambda history, path: plots.plot_training_curves(history, path, "val split, 7 tasks"),
    lambda history, path: plots.plot_losses(history, path, "Stage 1: training loss, validation loss (val split, 7 samples)"),
])
def test_step_axes_tick_whole_steps_and_titles_name_split_and_size(tmp_path, monkeypatch, draw):
    """Three steps would get ticks at 1.25, 1.5 ... by default; the step axis must only show whole steps."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    history = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)] + [{"step": 3, "val_loss": 0.5, "accuracy": 0.5,
                                                                   "macro_f1": 0.4}]
    draw(history, tmp_path / "curves.png")
    (figure,) = figures
    figure.canvas.draw()
    for ax in figure.axes:
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, plots.MaxNLocator) and locator._integer
        assert all(tick == int(tick) for tick in ax.get_xticks())
    assert any("val split, 7 " in ax.get_title() for ax in figure.axes)


def test_plot_final_report(tmp_path, evaluation):
    target = tmp_path / "final_evaluation_report.png"
    path = plots.plot_final_report(evaluation["metrics"], NAMES, evaluation["matrix"], evaluation["confidences"],
                                   evaluation["correct"], target, "Final evaluation")
    _assert_png(path, target, min_size=(1200, 800))


def test_failed_write_leaves_no_temp_file(tmp_path, evaluation, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_confusion(evaluation["matrix"], NAMES, tmp_path / "c.png", "Confusion")
    assert list(tmp_path.iterdir()) == []


def test_missing_robot_metric_names_the_key(tmp_path, evaluation):
    metrics = {k: v for k, v in evaluation["metrics"].items() if k != "Humanoid_recall"}
    with pytest.raises(ValueError, match="Humanoid_recall"):
        plots.plot_radar(metrics, NAMES, tmp_path / "r.png", "Robots")
    assert list(tmp_path.iterdir()) == []
