"""A tiny Stage 3 run end to end on generated data: metrics, plots, W&B offline, checkpoints, eval."""
from __future__ import annotations

import json
import re
import struct

import pytest
import torch

from ember_core.selection import validate_document
from ember_core.selector import Selector
from ember_core.cli import main
from ember_train.checkpointing import latest_checkpoint

TEMPLATES = {
    "underwater_robot": "Inspect the hull of ship {i} under the sea",
    "drone": "Survey rooftop {i} from above",
    "humanoid": "Open door {i} and greet visitors inside the office",
    "robot_with_wheels": "Carry boxes to shelf {i} in the warehouse",
    "robot_with_legs": "Climb rocky slope {i} with sensors",
}
PLOTS = ["calibration_epoch0.png", "confusion_matrix_epoch0.png", "final_evaluation_report.png",
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
    """One CLI training run (flags from a YAML file, one overridden on the command line)."""
    base = tmp_path_factory.mktemp("stage3")
    data = write_dataset(base / "tasks.jsonl")
    config = base / "stage3.yaml"
    config.write_text(f"robot_data: {data}\nmodel_config: tiny\nbatch_size: 8\nstage3_robot_epochs: 1\n"
                      f"eval_steps: 3\nsave_steps: 4\ngradient_accumulation: 2\nwandb: offline\nmax_steps: 100\n")
    output = base / "outputs"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "--stage", "3", "--config", str(config), "--output_dir", str(output)])
    assert code == 0
    return {"output": output, "data": data, "stdout": stdout.getvalue()}


def test_console_shows_validation_blocks_and_calibration(run):
    out = run["stdout"]
    assert "Validation metrics (Epoch 0, Step 3):" in out and "Validation metrics (Epoch 0, Step 6):" in out
    assert "Per-Robot Performance:" in out and "Underwater_Robot_f1:" in out
    assert "Test metrics (best checkpoint" in out
    summary = json.loads(out[out.rindex("{\n"):])
    assert summary["temperature"] > 0 and 0 <= summary["val_ece_after"] <= 1


def test_all_five_plots_are_written(run):
    folder = run["output"] / "stage3" / "visualizations"
    assert sorted(p.name for p in folder.iterdir()) == PLOTS
    for name in PLOTS:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def logged_history(run_file) -> dict[str, list[str]]:
    """Every history value in a W&B offline `.wandb` file: {key: [json values]}.

    The file is a LevelDB-style log (a 7-byte ':W&B' header, 32 KiB blocks of records with a 7-byte
    header: crc32, length, type full/first/middle/last) of wandb_internal_pb2.Record messages.
    """
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending, records = run_file.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if left < 7 or (length == 0 and kind == 0):
            position += left
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
    history: dict[str, list[str]] = {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(item.value_json)
    return history


def test_wandb_offline_run_holds_the_logged_metrics_and_plots(run):
    runs = list((run["output"] / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    history = logged_history(runs[0])
    for key in ("stage3/accuracy", "stage3/macro_f1", "stage3/loss", "stage3/learning_rate", "stage3/samples_per_second",
                "stage3/expected_calibration_error", "stage3/multi_robot_iou", "stage3/Drone_f1", "stage3/test_accuracy",
                "stage3/confusion_matrix/path", "stage3/robot_radar/path", "stage3/calibration/path",
                "stage3/final_evaluation_report/path", "stage3/training_curves/path"):
        assert key in history, key
    steps = len(history["stage3/loss"])
    assert steps == latest_step(run) and len(history["stage3/accuracy"]) == steps // 3 + 1


def latest_step(run) -> int:
    checkpoint = latest_checkpoint(run["output"] / "stage3")
    return json.loads((checkpoint / "training_state" / "state.json").read_text())["step"]


def test_checkpoints_have_training_state_and_latest_points_at_the_last(run):
    stage = run["output"] / "stage3"
    last = latest_step(run)
    assert last > 8
    assert sorted(p.name for p in stage.glob("checkpoint-*")) == sorted(["checkpoint-4", "checkpoint-8", f"checkpoint-{last}"])
    assert latest_checkpoint(stage) == stage / f"checkpoint-{last}"
    assert sorted(p.name for p in (stage / f"checkpoint-{last}" / "training_state").iterdir()) == [
        "optimizer.pt", "rng.pt", "scheduler.json", "state.json"]
    state = json.loads((stage / f"checkpoint-{last}" / "training_state" / "state.json").read_text())
    assert state["epoch"] == 0 and state["wandb_run_id"]


def test_best_checkpoint_loads_in_the_selector(run):
    selector = Selector(run["output"] / "stage3" / "best", device="cpu")
    document = selector.select("Inspect the hull of a tanker under the sea", top_k=5)
    validate_document(document)
    assert document["status"] == "ok" and len(document["candidates"]) == 5


def test_eval_command_prints_the_same_metrics(run, capsys):
    assert main(["eval", "--model", str(run["output"] / "stage3" / "best"), "--data", str(run["data"]),
                 "--split", "all", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_samples"] == 34 and 0 <= metrics["accuracy"] <= 1 and "Humanoid_f1" in metrics
    assert main(["eval", "--model", str(run["output"] / "stage3" / "best"), "--data", str(run["data"])]) == 0
    assert re.search(r"on the test split \(\d+ tasks\):", capsys.readouterr().out)


def test_init_from_warm_starts_with_the_saved_weights(run, tmp_path, caplog):
    from ember_core.model.checkpoint import EmberModel
    from ember_train.stage3 import Stage3Args, Stage3Trainer

    best = run["output"] / "stage3" / "best"
    with caplog.at_level("INFO"):
        trainer = Stage3Trainer(Stage3Args(robot_data=str(run["data"]), output_dir=str(tmp_path), init_from=str(best),
                                           wandb="disabled"))
    assert f"Loading model from checkpoint: {best}" in caplog.text
    assert "Embedding size matches tokenizer" in caplog.text
    saved = EmberModel.from_pretrained(best).model.state_dict()
    assert all(torch.equal(tensor, saved[key]) for key, tensor in trainer.model.state_dict().items())


def test_kfold_cross_validation_trains_one_model_per_fold(tmp_path, capsys):
    data = write_dataset(tmp_path / "tasks.jsonl")
    assert main(["train", "--stage", "3", "--robot_data", str(data), "--output_dir", str(tmp_path / "cv"),
                 "--model_config", "tiny", "--kfold", "2", "--max_steps", "2", "--batch_size", "8",
                 "--stage3_robot_epochs", "1", "--wandb", "disabled"]) == 0
    result = json.loads((tmp_path / "cv" / "kfold.json").read_text())
    assert len(result["folds"]) == 2 and sum(f["num_samples"] for f in result["folds"]) == 34
    assert (tmp_path / "cv" / "fold1" / "stage3" / "best" / "model.safetensors").is_file()
    assert "2-fold cross-validation (grouped by task)" in capsys.readouterr().out
