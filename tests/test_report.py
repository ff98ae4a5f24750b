"""Baselines, bootstrap intervals, the report files, and `ember eval --report` end to end."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from ember_core.cli import main
from ember_train.baselines import (
    BASELINES,
    embedding_zero_shot,
    keyword_rules,
    majority_set,
    tfidf_logistic,
)
from ember_train.data import TaskRecord
from ember_train.metrics import SUMMARY_KEYS, compute_metrics, weighted_metrics
from ember_train.public_data import PUBLIC_DATA
from ember_train.report import bootstrap_ci, build_report, format_report, write_report

UNDERWATER = ["Dive to the reef and count the fish.", "Inspect the ship hull below the waterline underwater.",
              "Collect samples from the seabed of the ocean.", "Survey the coral reef for bleaching.",
              "Check the submerged pipeline on the sea floor."]
AERIAL = ["Fly over the forest and take aerial photos.", "Inspect the roof of the tall tower from above.",
          "Survey the crops from the air with a camera.", "Fly to the top of the wind turbine blade.",
          "Take overhead pictures of the stadium from the sky."]


def records(tasks: list[str], *robots: str) -> list[TaskRecord]:
    return [TaskRecord(task, robots) for task in tasks]


@pytest.fixture(scope="module")
def encoder():
    from ember_core.model.text_encoder import minilm

    return minilm()


def random_case(seed: int, n: int = 40, robots: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, robots))
    probs[:, 1] = np.round(probs[:, 1], 1)  # ties between tasks, which AP breaks by task order
    targets = (rng.random((n, robots)) < 0.3).astype(int)
    targets[np.arange(n), rng.integers(0, robots, n)] = 1
    return probs, targets


def test_keyword_rules_sends_a_dive_to_the_underwater_robot(fleet):
    probs = keyword_rules(records(["Dive to the reef."], "underwater_robot"), fleet)
    assert probs.shape == (1, fleet.num_robots)
    assert np.isclose(probs.sum(), 1.0)
    assert fleet.ids[probs[0].argmax()] == "underwater_robot"


def test_zero_shot_embedding_sends_a_dive_to_the_underwater_robot(fleet, encoder):
    probs = embedding_zero_shot(records(["Dive to the reef."], "underwater_robot"), fleet, encoder)
    assert np.isclose(probs.sum(), 1.0)
    assert fleet.ids[probs[0].argmax()] == "underwater_robot"


def test_tfidf_logistic_learns_from_ten_records(fleet):
    train = records(UNDERWATER, "underwater_robot") + records(AERIAL, "drone")
    test = records(["Dive to the reef to look at the coral.", "Fly over the tower and take aerial photos."],
                   "underwater_robot")
    probs = tfidf_logistic(train, test, fleet, seed=0)
    assert [fleet.ids[i] for i in probs.argmax(axis=1)] == ["underwater_robot", "drone"]
    # Robots never suitable in training get 0.
    absent = [fleet.index(robot) for robot in ("humanoid", "robot_with_wheels", "robot_with_legs")]
    assert np.all(probs[:, absent] == 0.0)


def test_majority_set_is_the_most_frequent_gold_set_whatever_the_order(fleet):
    train = (records(["a1", "a2"], "drone", "robot_with_legs") + records(["b1", "b2"], "humanoid")
             + records(["c1"], "underwater_robot"))
    test = records(["t1", "t2", "t3"], "drone")
    first = majority_set(train, test, fleet)
    # {drone, legs} and {humanoid} tie at 2: the first in sorted order of fleet indices wins (drone is 0).
    expected = np.zeros(fleet.num_robots)
    expected[[fleet.index("drone"), fleet.index("robot_with_legs")]] = 1.0
    assert np.array_equal(first, np.tile(expected, (3, 1)))
    shuffled = train[:]
    random.Random(3).shuffle(shuffled)
    assert np.array_equal(majority_set(shuffled, test, fleet), first)


def test_baselines_are_listed_in_a_fixed_order():
    assert list(BASELINES) == ["majority set", "keyword rules", "tf-idf logistic", "MiniLM zero-shot"]
    assert all(baseline.description for baseline in BASELINES.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lean_metrics_agree_with_compute_metrics(seed):
    probs, targets = random_case(seed)
    names = [f"r{j}" for j in range(probs.shape[1])]
    rng = np.random.default_rng(seed + 10)
    draws = rng.integers(0, probs.shape[0], size=(20, probs.shape[0]))
    weights = np.stack([np.bincount(row, minlength=probs.shape[0]) for row in draws])
    weights[0] = 1  # the original tasks, once each
    lean = weighted_metrics(probs, targets, weights)
    for b, row in enumerate(draws):
        rows = np.arange(probs.shape[0]) if b == 0 else np.sort(row)
        full = compute_metrics(probs[rows], targets[rows], names)
        for key in SUMMARY_KEYS:
            assert lean[key][b] == pytest.approx(full[key], abs=1e-12), (key, b)


def test_a_perfect_predictor_has_a_degenerate_interval():
    _, targets = random_case(0)
    intervals = bootstrap_ci(targets.astype(float), targets, [f"r{j}" for j in range(5)], ["accuracy"], samples=200)
    assert intervals == {"accuracy": (1.0, 1.0)}


def test_intervals_contain_the_estimate_and_repeat_under_a_seed():
    noise, targets = random_case(4, n=60)
    probs = 0.4 * targets + 0.6 * noise  # informative but imperfect: every metric strictly inside (0, 1)
    names = [f"r{j}" for j in range(5)]
    point = compute_metrics(probs, targets, names)
    first = bootstrap_ci(probs, targets, names, samples=300, seed=7)
    # Means over tasks: the percentile interval brackets them. (ECE and AP are biased under
    # resampling, so their point estimate may sit at the edge of the interval.)
    for key in ("accuracy", "exact_set_accuracy", "multi_robot_iou"):
        low, high = first[key]
        assert low <= point[key] <= high and low < high
    assert bootstrap_ci(probs, targets, names, samples=300, seed=7) == first
    assert bootstrap_ci(probs, targets, names, samples=300, seed=8) != first


def test_bootstrap_rejects_a_metric_it_cannot_resample():
    probs, targets = random_case(0)
    with pytest.raises(ValueError, match="r0_f1"):
        bootstrap_ci(probs, targets, [f"r{j}" for j in range(5)], ["r0_f1"])


def test_write_report_writes_every_system_and_a_png(tmp_path):
    probs, targets = random_case(5, n=30)
    names = [f"Robot {j}" for j in range(5)]
    systems = {"model": probs, "perfect": targets.astype(float)}
    results = build_report(systems, targets, names, samples=100, seed=0)
    table = format_report(results, "Title")
    assert [line.split()[0] for line in table.splitlines()[2:4]] == ["model", "perfect"]
    assert "1.000 [1.000, 1.000]" in table
    written = write_report(results, tmp_path / "out", "Title", {"command": "ember eval", "robots": names})
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == json.loads(json.dumps(written))
    assert [s["name"] for s in report["systems"]] == ["model", "perfect"]
    assert report["n"] == 30 and report["samples"] == 100 and report["seed"] == 0
    assert report["extra"]["command"] == "ember eval"
    assert set(report["systems"][0]["intervals"]) == set(SUMMARY_KEYS)
    with Image.open(tmp_path / "out" / "report.png") as image:
        assert image.format == "PNG" and image.size[0] > 500


@pytest.fixture
def small_jsonl(tmp_path):
    lines = [{"task": f"{task} (site {i})", "robots": [robot]}
             for i in range(2) for tasks, robot in ((UNDERWATER, "Underwater Robot"), (AERIAL, "Drone"))
             for task in tasks]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_eval_report_end_to_end(tiny_model_dir, small_jsonl, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", "--model", str(tiny_model_dir), "--data", str(small_jsonl), "--split", "test",
                 "--no-images", "--bootstrap_samples", "50", "--report", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "hit@1" in printed and "tf-idf logistic" in printed
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["systems"]][1:] == list(BASELINES)
    assert report["systems"][0]["name"].startswith("model ")
    assert report["n"] == 2 and report["samples"] == 50
    assert "--report" in report["extra"]["command"]
    check = report["extra"]["calibration check of the model"]["top-1 ECE"]
    assert check["observed"] == pytest.approx(report["systems"][0]["metrics"]["expected_calibration_error"], abs=1e-12)
    assert "Calibration check, top-1 ECE: " in printed and "a calibrated model with these confidences" in printed
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_report_refuses_baselines_fitted_on_the_scored_tasks(tiny_model_dir, small_jsonl, tmp_path, capsys):
    code = main(["eval", "--model", str(tiny_model_dir), "--data", str(small_jsonl), "--split", "all",
                 "--train_data", str(small_jsonl), "--report", str(tmp_path / "report")])
    assert code == 2
    assert "--train_data" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.skipif(not PUBLIC_DATA.is_dir(), reason=f"public dataset not found at {PUBLIC_DATA}")
def test_eval_report_fits_the_baselines_on_the_public_data_by_default(tiny_model_dir, small_jsonl, tmp_path):
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(small_jsonl), "--split", "all",
                 "--report", str(tmp_path / "report"), "--bootstrap_samples", "20"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["extra"]["baselines fitted on"].startswith(f"{PUBLIC_DATA}, train split (seed 0): ")


def test_train_data_needs_report(small_jsonl, capsys):
    code = main(["eval", "--model", "unused", "--data", str(small_jsonl), "--train_data", str(small_jsonl)])
    assert code == 2
    assert "--report" in capsys.readouterr().err
