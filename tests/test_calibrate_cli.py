"""`ember calibrate`: out-of-fold scores of a --kfold run and development sets in, the model's calibration out."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ember_core.calibration import Calibration
from ember_core.cli import main
from ember_core.processor import ProcessorConfig
from ember_train.evaluate import TEST_SCORES_FILE, Scores

TRUTH = Calibration(scale=0.6, margin=1.2, bias=-0.8)


def _fold_scores(seed: int, tasks: int = 400) -> Scores:
    """Logits of five robots with labels drawn from TRUTH's confidences, every task with a suitable robot."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (tasks, 5)).astype(np.float32)
    targets = (rng.random(logits.shape) < TRUTH.probabilities(torch.from_numpy(logits)).numpy()).astype(np.float32)
    targets[np.arange(tasks), logits.argmax(1)] += targets.sum(1) == 0  # a task always has a gold robot
    return Scores(logits, targets)


@pytest.fixture
def kfold_dir(tmp_path, tiny_model_dir):
    """What `ember train --kfold 3` leaves: fold{i}/stage3/test_scores.json and fold{i}/stage3/best."""
    for fold in range(3):
        stage = tmp_path / "cv" / f"fold{fold}" / "stage3"
        shutil.copytree(tiny_model_dir, stage / "best")
        _fold_scores(fold).save(stage / TEST_SCORES_FILE)
    return tmp_path / "cv"


def test_calibrate_fits_on_the_folds_and_dev_sets_and_writes_the_model(kfold_dir, tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    dev = tmp_path / "dev.jsonl"
    dev.write_text("\n".join(json.dumps({"task": task, "robots": robots}) for task, robots in [
        ("Film the roof of the warehouse from above", ["Drone"]),
        ("Inspect the hull of the ferry below the waterline", ["Underwater Robot"]),
        ("Carry the boxes up the stairs of the old mill", ["Robot with Legs", "Humanoid"]),
    ]) + "\n")
    report = tmp_path / "report"
    assert main(["calibrate", "--model", str(model), "--out_of_fold", str(kfold_dir), "--dev", str(dev),
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    fitted = ProcessorConfig.load(model).calibration
    # Near the truth (giving label-less tasks their top robot adds to the margin).
    assert fitted.scale == pytest.approx(TRUTH.scale, rel=0.3) and fitted.margin == pytest.approx(TRUTH.margin, rel=0.5)
    assert f"Calibration fitted on 1200 out-of-fold tasks (3 folds) + dev.jsonl (3 tasks): {fitted.describe()}" in out
    document = json.loads((report / "calibration.json").read_text())
    assert document["calibration"] == {"scale": fitted.scale, "margin": fitted.margin, "bias": fitted.bias}
    summary = document["summary"]
    raw, cross = summary["raw sigmoid"], summary["cross-fitted (this command's fit)"]
    # Cross-fitting never scores a fold with a calibration fitted on it, and still lands near the truth.
    assert cross["expected_calibration_error"] < 0.06 < raw["expected_calibration_error"]
    assert cross["robot_calibration_error"] < raw["robot_calibration_error"]
    assert cross["accuracy"] == raw["accuracy"]  # the ranking never changes
    # The raw sigmoid's every-robot ECE is far beyond what a calibrated model with its confidences shows.
    assert raw["robot_ece_p"] == 0.0 and raw["robot_ece_if_calibrated"] < 0.05 < raw["robot_calibration_error"]
    assert "top-1 ECE (p)" in out and "a calibrated model's mean ECE on these tasks" in out
    for name in document["plots"].values():
        assert (report / name).stat().st_size > 10_000
    # The fold models' own calibration (the tiny model's identity) is the middle row.
    assert summary["each fold's validation fit"] == raw


def test_calibrate_without_fold_scores_says_how_to_make_them(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "cv" / "fold0").mkdir(parents=True)
    code = main(["calibrate", "--model", str(tiny_model_dir), "--out_of_fold", str(tmp_path / "cv")])
    err = capsys.readouterr().err
    assert code != 0
    assert "found 0 fold*/stage3/test_scores.json; run `ember train --kfold 5 --output_dir" in err
    assert "Traceback" not in err
