"""`ember train --stage all` on tiny generated data in the real formats: the warm-start chain and its log lines,
the schedule, a fleet that changes between stages, and a 2-process torchrun (gloo) run of the trainer."""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from safetensors.torch import load_file

from conftest import REPO
from ember_core.cli import main
from ember_train.checkpointing import latest_checkpoint

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """The messages logged at INFO and above while in the block (caplog is per test; the runs here are per module)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(f"{record.levelname} {record.getMessage()}")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("smoke") / "data"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_smoke_data.py"), str(directory)], check=True,
                   capture_output=True)
    return directory


def config_lines(data: Path) -> str:
    """A --config file for a tiny run of every stage on the smoke data (a kebab-case key among them)."""
    return (f"stage1_data: {data / 'stage1'}\nstage2-data: {data / 'stage2'}\nrobot_data: {data / 'robot_tasks.jsonl'}\n"
            f"model_config: tiny\nstage1_epochs: 1\nstage2_epochs: 1\nstage3_robot_epochs: 1\nbatch_size: 8\n"
            f"gradient_accumulation: 2\nlearning_rate: 1e-3\nexplanation_epochs: 0\nwandb: disabled\n"
            f"eval_steps: 1000\nsave_steps: 1000\n")


@pytest.fixture(scope="module")
def chain(smoke_data, tmp_path_factory) -> dict:
    """`ember train --config run.yaml --output-dir OUT`, with `stage: all` in the file, and what it logged."""
    base = tmp_path_factory.mktemp("chain")
    config = base / "run.yaml"
    config.write_text("stage: all\n" + config_lines(smoke_data), encoding="utf-8")
    output = base / "outputs"
    with captured_logs() as messages:
        assert main(["train", "--config", str(config), "--output-dir", str(output)]) == 0
    return {"output": output, "log": messages, "config": config}


def stage_weights(output: Path, stage: int) -> dict:
    return load_file(latest_checkpoint(output / f"stage{stage}") / "model.safetensors")


def test_each_stage_warm_starts_from_the_previous_stages_latest_checkpoint(chain):
    output, log = chain["output"], chain["log"]
    stage1, stage2 = latest_checkpoint(output / "stage1"), latest_checkpoint(output / "stage2")
    expected = [
        "INFO Stage 1: Vision-Language Alignment", "INFO Building a new tiny model",
        "INFO ✓ Embedding size matches tokenizer: 50262 tokens",
        "INFO Auto-detecting checkpoint from previous stage for Stage 2...",
        f"INFO Found latest checkpoint from Stage 1: {stage1}",
        "INFO Stage 2: Instruction Tuning", f"INFO Loading model from checkpoint: {stage1}",
        "INFO ✓ Embedding size matches tokenizer: 50262 tokens",
        "INFO Auto-detecting checkpoint from previous stage for Stage 3...",
        f"INFO Found latest checkpoint from Stage 2: {stage2}",
        "INFO Stage 3: Robot Fleet Selection Training", f"INFO Loading model from checkpoint: {stage2}",
        "INFO ✓ Embedding size matches tokenizer: 50262 tokens",
    ]
    positions = [log.index(line, log.index(expected[i - 1]) + 1 if i else 0) for i, line in enumerate(expected)]
    assert positions == sorted(positions)
    assert (output / "stage3" / "best" / "model.safetensors").is_file()
    for stage in (1, 2):
        assert (output / f"stage{stage}" / "visualizations" / "training_curves.png").is_file()
    assert len([line for line in log if line.startswith("INFO Validation loss (Epoch 0, Step ")]) == 2


def test_every_stage_directory_has_args_results_best_and_last(chain):
    """Stages 1-2 as Stage 3: the settings, one results row per validation (their loss), best/ and last/."""
    for stage in (1, 2, 3):
        directory = chain["output"] / f"stage{stage}"
        assert yaml.safe_load((directory / "args.yaml").read_text())["stage"] == "all"
        with open(directory / "results.csv", newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert rows and rows[0]["split"] == "val" and list(rows[0])[:3] == ["step", "epoch", "split"], stage
        for model in ("best", "last"):
            assert (directory / model / "model.safetensors").is_file(), (stage, model)
    for stage in (1, 2):
        with open(chain["output"] / f"stage{stage}" / "results.csv", newline="") as stream:
            assert [list(row) for row in csv.DictReader(stream)] == [["step", "epoch", "split", "loss"]]


def test_what_a_stage_freezes_stays_as_the_previous_stage_left_it(chain):
    """Stage 2 freezes the vision encoder and trains the language model; Stages 1-2 freeze the robot head."""
    first, second, third = (stage_weights(chain["output"], stage) for stage in (1, 2, 3))
    vision = [name for name in first if name.startswith("vision.backbone.")]
    assert vision and all((first[name] == second[name]).all() for name in vision)
    language = [name for name in first if name.startswith("language_model.")]
    assert any(not (first[name] == second[name]).all() for name in language)
    head = [name for name in first if name.startswith("robot_head.") and first[name].is_floating_point()]
    assert all((first[name] == second[name]).all() for name in head)
    assert any(not (second[name] == third[name]).all() for name in head)


def test_the_trainable_table_is_logged_at_each_stage_start(chain):
    log = chain["log"]
    for stage in (1, 2, 3):
        assert f"INFO Stage {stage} trains (learning rate 0.001 x multiplier; 0 = frozen):" in log
    rows = [line.split() for line in log if line.startswith("INFO   vision ")]
    assert [row[2] for row in rows] == ["1", "0", "1"] and rows[1][3] == "0"


def test_every_schedule_leaves_warm_up_and_ends_at_zero(chain):
    """The learning-rate schedule spans the stage's updates: after the last one the rate is 0, not still warming up."""
    for stage in (1, 2, 3):
        scheduler = json.loads((latest_checkpoint(chain["output"] / f"stage{stage}") / "training_state" /
                                "scheduler.json").read_text())
        assert scheduler["last_epoch"] > 0 and max(scheduler["_last_lr"]) < 1e-12, stage


def test_a_fleet_that_changes_between_stages_is_laid_out_by_robot_id(chain, tmp_path):
    output = tmp_path / "outputs"
    (output / "stage2").mkdir(parents=True)
    checkpoint = latest_checkpoint(chain["output"] / "stage2")
    (output / "stage2" / checkpoint.name).symlink_to(checkpoint)
    (output / "stage2" / "latest").write_text(checkpoint.name + "\n")
    with captured_logs() as log:
        assert main(["train", "--config", str(chain["config"]), "--stage", "3", "--output_dir", str(output),
                     "--robots", str(REPO / "tests" / "data" / "robots_with_snake.yaml"), "--max_steps", "1"]) == 0
    assert f"INFO Found latest checkpoint from Stage 2: {output / 'stage2' / checkpoint.name}" in log
    assert any(line.startswith("WARNING Fleet differs from the checkpoint's: added ['snake_robot']") for line in log)
    assert "WARNING New robot(s) ['snake_robot'] are scored from their capability cards only until trained" in log
    assert json.loads((output / "stage3" / "best" / "config.json").read_text())["robot_ids"][-1] == "snake_robot"


def test_two_processes_under_torchrun_end_with_identical_weights(smoke_data, tmp_path):
    """The real entry point under `torchrun --standalone --nproc_per_node=2` (gloo): Stage 1 for a few steps."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "DISABLE_WANDB": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name in TORCHRUN_VARIABLES:
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ember_train",
               "--stage", "1", "--distributed", "--stage1-data", str(smoke_data / "stage1"), "--model_config", "tiny",
               "--stage1_epochs", "1", "--batch_size", "4", "--gradient_accumulation", "2", "--max_steps", "4",
               "--mixed_precision", "bf16", "--output_dir", str(tmp_path), "--eval_steps", "2", "--save_steps", "1000"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Weights identical on all 2 ranks after 4 steps" in run.stderr
    assert "2 process(es) x batch 4 x accumulation 2" in run.stderr
    assert run.stderr.count("Stage 1: Vision-Language Alignment") == 1  # rank 1 logs no INFO
    assert latest_checkpoint(tmp_path / "stage1").name == "checkpoint-4"
    with open(tmp_path / "stage1" / "results.csv", newline="") as stream:
        # Step 4 is the last (--max_steps): the epoch's end evaluates it, once.
        assert [row["step"] for row in csv.DictReader(stream)] == ["2", "4"]
