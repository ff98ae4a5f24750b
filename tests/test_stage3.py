"""A tiny Stage 3 run end to end on generated data: metrics, plots, W&B offline, checkpoints, eval."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ember_core.cli import build_parser, main
from ember_core.pretrained import load_pretrained
from ember_core.request import SelectionRequest
from ember_core.selection import validate_document
from ember_core.robots_file import load_fleet
from ember_core.selector import Selector
from ember_train.args import TrainArgs
from ember_train.baselines import tfidf_logistic
from ember_train.checkpointing import LATEST
from ember_train.cli import train_args
from ember_train.data import kfold, load_records, robot_targets, split_records
from ember_train.evaluate import TEST_SCORES_FILE, Scores
from ember_train.metrics import compute_metrics

TEMPLATES = {
    "underwater_robot": "Inspect the hull of ship {i} under the sea",
    "drone": "Survey rooftop {i} from above",
    "humanoid": "Open door {i} and greet visitors inside the office",
    "robot_with_wheels": "Carry boxes to shelf {i} in the warehouse",
    "robot_with_legs": "Climb rocky slope {i} with sensors",
}
PLOTS = ["calibration_epoch0.png", "confusion_matrix_epoch0.png", "explanation_loss.png", "final_evaluation_report.png",
         "robot_radar_epoch0.png", "training_curves.png"]


def write_dataset(path):
    lines = []
    for robot, template in TEMPLATES.items():
        lines += [json.dumps({"task": template.format(i=i), "robots": [robot]}) for i in range(6)]
    lines += [json.dumps({"task": f"Find survivors in collapsed block {i}", "robots": ["Drone", "Robot with Legs"],
                          "plan": [{"subtask": "Map the block from above", "assigned_robot": "Drone", "execution_order": 1},
                                   {"subtask": "Search the rubble", "assigned_robot": "Robot with Legs", "execution_order": 2}]})
              for i in range(4)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One CLI training run (flags from a YAML file, one overridden on the command line), with real W&B offline.

    What the run hands to W&B is recorded on its way in (`Run.log`), so the test reads W&B's own input
    rather than decoding its private file format.
    """
    import wandb

    base = tmp_path_factory.mktemp("stage3")
    data = write_dataset(base / "tasks.jsonl")
    config = base / "stage3.yaml"
    config.write_text(f"robot_data: {data}\nmodel_config: tiny\nbatch_size: 8\nstage3_robot_epochs: 1\n"
                      f"eval_steps: 3\nsave_steps: 4\nlog_steps: 1\ngradient_accumulation: 2\nwandb: offline\nmax_steps: 100\n"
                      f"explanation_epochs: 2\n")
    output = base / "outputs"
    argv = ["train", "--config", str(config), "--output_dir", str(output)]
    logged: dict[str, list] = {}
    original = wandb.Run.log

    def record(self, data, *args, **kwargs):
        for key, value in data.items():
            logged.setdefault(key, []).append(value)
        return original(self, data, *args, **kwargs)

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(wandb.Run, "log", record)
        code = main(argv)
    assert code == 0
    printed = stdout.getvalue()
    return {"output": output, "data": data, "stdout": printed, "logged": logged, "argv": argv,
            "summary": json.JSONDecoder().raw_decode(printed, printed.rindex("\n{\n") + 1)[0]}


def test_console_shows_validation_blocks_and_calibration(run):
    out = run["stdout"]
    assert "Validation metrics (Epoch 0, Step 3):" in out and "Validation metrics (Epoch 0, Step 6):" in out
    assert "Per-Robot Performance:" in out and "Underwater_Robot_f1:" in out
    assert "Test metrics (best checkpoint" in out
    summary = run["summary"]
    assert summary["calibration"]["scale"] > 0 and 0 <= summary["val_ece_after"] <= 1


def test_all_six_plots_are_written(run):
    folder = run["output"] / "stage3" / "visualizations"
    assert sorted(p.name for p in folder.iterdir()) == PLOTS
    for name in PLOTS:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wandb_offline_run_holds_the_logged_metrics_and_plots(run):
    import wandb

    runs = list((run["output"] / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    history = run["logged"]
    for key in ("train/loss", "train/learning_rate", "train/samples_per_second", "train/explanation_loss",
                "val/accuracy", "val/macro_f1", "val/expected_calibration_error", "val/multi_robot_iou", "val/Drone_f1",
                "val/confusion_matrix", "val/robot_radar", "val/calibration", "val/training_curves",
                "val/explanation_loss", "test/accuracy", "test/macro_f1", "test/final_evaluation_report"):
        assert key in history, key
    assert {key.split("/")[0] for key in history} == {"train", "val", "test"}
    assert all(isinstance(image, wandb.Image) for image in history["val/training_curves"])
    steps = len(history["train/loss"])
    assert steps == latest_step(run) and len(history["val/accuracy"]) == steps // 3 + 1
    assert len(history["test/accuracy"]) == 1


def test_the_run_directory_has_args_results_best_and_last(run):
    """Each stage's directory, as ultralytics' and the HF Trainer's: the settings, a table of every evaluation,
    the best and the last model, the checkpoints and the plots."""
    stage = run["output"] / "stage3"
    assert {"args.yaml", "results.csv", "best", "last", LATEST, "visualizations"} <= {p.name for p in stage.iterdir()}
    settings = yaml.safe_load((stage / "args.yaml").read_text())
    assert TrainArgs(**settings) == train_args(build_parser().parse_args(run["argv"]))
    with open(stage / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    header = list(rows[0])
    assert header[:3] == ["step", "epoch", "split"] and {"accuracy", "macro_f1", "Drone_f1"} <= set(header)
    steps = latest_step(run)
    assert [row["split"] for row in rows] == ["val"] * (steps // 3 + 1) + ["test"]
    assert [int(row["step"]) for row in rows[:-1]] == list(range(3, steps + 1, 3)) + [steps]
    assert float(rows[-1]["accuracy"]) == pytest.approx(run["summary"]["test"]["accuracy"])
    last = load_file(stage / "last" / "model.safetensors")
    final = load_file(stage / f"checkpoint-{steps}" / "model.safetensors")
    assert last.keys() == final.keys() and all(torch.equal(last[key], final[key]) for key in last)
    assert (stage / "best" / "model.safetensors").is_file()


def latest_step(run) -> int:
    stage = run["output"] / "stage3"
    checkpoint = stage / (stage / LATEST).read_text().strip()
    return json.loads((checkpoint / "training_state" / "state.json").read_text())["step"]


def test_checkpoints_have_training_state_and_latest_points_at_the_last(run):
    stage = run["output"] / "stage3"
    last = latest_step(run)
    assert last > 8
    assert sorted(p.name for p in stage.glob("checkpoint-*")) == sorted(["checkpoint-4", "checkpoint-8", f"checkpoint-{last}"])
    assert (stage / LATEST).read_text() == f"checkpoint-{last}\n"
    assert sorted(p.name for p in (stage / f"checkpoint-{last}" / "training_state").iterdir()) == [
        "optimizer.pt", "rng_state_rank0.pt", "scheduler.json", "state.json", "trainer.pt"]
    state = json.loads((stage / f"checkpoint-{last}" / "training_state" / "state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 0) and state["wandb_run_id"]  # data position: the one epoch done


def test_best_checkpoint_loads_in_the_selector(run):
    selector = Selector(run["output"] / "stage3" / "best", device="cpu")
    document = selector.select(SelectionRequest("Inspect the hull of a tanker under the sea", top_k=5)).to_document()
    validate_document(document)
    assert document["status"] == "ok" and len(document["candidates"]) == 5


def test_eval_command_reports_exactly_the_trainers_test_metrics(run, capsys):
    """`ember eval` on the saved best model and the trainer's own end-of-run evaluation go through one pipeline."""
    best = str(run["output"] / "stage3" / "best")
    assert main(["eval", "--model", best, "--data", str(run["data"]), "--split", "test", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    trained = run["summary"]["test"]
    assert {key: evaluated[key] for key in trained} == pytest.approx(trained, abs=1e-6)
    assert evaluated["calibration"] == run["summary"]["calibration"]
    assert main(["eval", "--model", best, "--data", str(run["data"])]) == 0
    assert re.search(r"on the test split \(\d+ tasks\):", capsys.readouterr().out)


def test_init_from_warm_starts_with_the_saved_weights(run, tmp_path, caplog):
    from ember_train.distributed import DistributedContext
    from ember_train.stage3 import SelectionStage

    best = run["output"] / "stage3" / "best"
    with caplog.at_level("INFO"):
        stage = SelectionStage(TrainArgs(robot_data=str(run["data"]), output_dir=str(tmp_path), wandb="disabled"),
                               DistributedContext.from_environment(device="cpu"), init_from=str(best))
    assert f"Loading model from checkpoint: {best}" in caplog.text
    assert "Embedding size matches tokenizer" in caplog.text
    saved = load_pretrained(best)[0].state_dict()
    assert all(torch.equal(tensor, saved[key]) for key, tensor in stage.model.state_dict().items())


def test_kfold_cross_validation_trains_one_model_per_fold(tmp_path, capsys):
    data = write_dataset(tmp_path / "tasks.jsonl")
    assert main(["train", "--robot_data", str(data), "--output_dir", str(tmp_path / "cv"),
                 "--model_config", "tiny", "--kfold", "2", "--max_steps", "2", "--batch_size", "8",
                 "--stage3_robot_epochs", "1", "--wandb", "disabled"]) == 0
    result = json.loads((tmp_path / "cv" / "kfold.json").read_text())
    assert len(result["folds"]) == 2 and sum(f["num_samples"] for f in result["folds"]) == 34
    assert (tmp_path / "cv" / "fold1" / "stage3" / "best" / "model.safetensors").is_file()
    assert "2-fold cross-validation (grouped by task)" in capsys.readouterr().out
    # The TF-IDF baseline on the same folds: trained on each fold's training tasks, scored on its held-out tasks.
    fleet = load_fleet()
    expected = []
    for rest, held_out in kfold(load_records(data, fleet), 2, 0):
        train = split_records(rest, seed=0, val_fraction=0.1, test_fraction=0.0).train
        expected.append(compute_metrics(tfidf_logistic(train, held_out, fleet), robot_targets(held_out, fleet),
                                        fleet.names)["accuracy"])
    baseline = result["tfidf_logistic"]
    assert [fold["accuracy"] for fold in baseline["folds"]] == pytest.approx(expected)
    assert baseline["mean"]["accuracy"] == pytest.approx(sum(expected) / 2)
    # Each fold's held-out scores, which `ember calibrate` fits on: every task once across the folds.
    scores = [Scores.load(tmp_path / "cv" / f"fold{fold}" / "stage3" / TEST_SCORES_FILE) for fold in (0, 1)]
    assert sum(len(s.logits) for s in scores) == 34 and all(s.logits.shape == s.targets.shape for s in scores)


def test_training_overfits_a_few_tasks_and_beats_the_majority_baseline_on_them(tmp_path):
    """Learning, not just running: the loss falls and the trained head ranks its own training tasks better
    than always answering the most frequent robot set."""
    from ember_train.baselines import majority_set
    from ember_train.distributed import DistributedContext
    from ember_train.evaluate import score_records
    from ember_train.metrics import compute_metrics
    from ember_train.stage3 import SelectionStage
    from ember_train.trainer import Trainer

    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"task": template.format(i=i), "robots": [robot]}) + "\n"
                            for robot, template in TEMPLATES.items() for i in range(4)))
    args = TrainArgs(robot_data=str(data), output_dir=str(tmp_path / "out"), model_config="tiny", stage3_robot_epochs=5,
                     batch_size=8, gradient_accumulation=1, learning_rate=3e-3, augment_factor=1, image_dropout=0.0,
                     eval_steps=10**6, save_steps=10**6, wandb="disabled")
    stage = SelectionStage(args, DistributedContext.from_environment(device="cpu"), init_from=None)
    trainer = Trainer(stage)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.history if "loss" in entry]
    assert sum(losses[-3:]) < 0.85 * sum(losses[:3])
    train = stage.splits.train
    scores = score_records(stage.model, stage.processor, train)
    learned = scores.metrics(stage.fleet.names)["accuracy"]
    majority = compute_metrics(majority_set(train, train, stage.fleet), scores.targets, stage.fleet.names)["accuracy"]
    assert learned > majority + 0.2


def test_an_epoch_ending_in_one_task_with_its_image_trains(tmp_path):
    """28 training tasks in batches of 9 leave a last batch of one task, shown with its image: at 32 px the
    tiny preset's vision encoder has a 1x1 map in its last stage, where training-mode BatchNorm on one image
    raised "Expected more than 1 value per channel when training"."""
    from ember_train.distributed import DistributedContext
    from ember_train.stage3 import SelectionStage
    from ember_train.trainer import Trainer

    args = TrainArgs(robot_data=str(write_dataset(tmp_path / "tasks.jsonl")), output_dir=str(tmp_path / "out"),
                     model_config="tiny", stage3_robot_epochs=1, batch_size=9, gradient_accumulation=1,
                     augment_factor=1, image_dropout=0.0, explanation_epochs=0, eval_steps=10**6, save_steps=10**6,
                     wandb="disabled")
    stage = SelectionStage(args, DistributedContext.from_environment(device="cpu"), init_from=None)
    assert len(stage.train_data) == 3 * 9 + 1
    before = {name: p.detach().clone() for name, p in stage.model.vision.backbone.named_parameters()}
    trainer = Trainer(stage)
    trainer.train()
    assert trainer.step == 4
    assert any(not torch.equal(before[name], p) for name, p in stage.model.vision.backbone.named_parameters())
