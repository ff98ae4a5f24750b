"""Exact resume: a tiny Stage 3 run killed with SIGKILL mid-epoch and resumed ends as an uninterrupted one;
--save_total_limit bounds the checkpoints; Stage 1's learned temperature is part of the saved state."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from ember_train.checkpointing import LATEST, STATE_DIR
from test_stage3 import write_dataset

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def train_command(data: Path, output: Path, *extra: str) -> list[str]:
    """Stage 3 on the CPU for two epochs, a checkpoint every 2 batches (each after an optimizer update)."""
    return [sys.executable, "-m", "ember_train", "--stage", "3", "--robot_data", str(data), "--model_config", "tiny",
            "--batch_size", "8", "--stage3_robot_epochs", "2", "--gradient_accumulation", "2", "--save_steps", "2",
            "--eval_steps", "3", "--explanation_epochs", "0", "--output_dir", str(output), "--device", "cpu", *extra]


def results(stage: Path) -> list[dict[str, str]]:
    with open(stage / "results.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("resume")
    data = write_dataset(base / "tasks.jsonl")
    reference, resumed = base / "reference", base / "resumed"
    # The uninterrupted run and the one to kill run side by side (one thread each).
    log = base / "reference.log"
    with open(log, "w") as stream:
        uninterrupted = subprocess.Popen(train_command(data, reference, "--wandb", "disabled"), env=ENV,
                                         stdout=subprocess.DEVNULL, stderr=stream)
    killed = subprocess.Popen(train_command(data, resumed, "--wandb", "offline", "--save_total_limit", "2"), env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = resumed / "stage3"
    deadline = time.monotonic() + 300
    while not (stage / "checkpoint-4").is_dir() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert uninterrupted.wait(timeout=600) == 0, log.read_text()[-3000:]
    interrupted = json.loads((stage / (stage / LATEST).read_text().strip() / STATE_DIR / "state.json").read_text())
    run = subprocess.run(train_command(data, resumed, "--wandb", "offline", "--save_total_limit", "2", "--resume", "auto"),
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return {"reference": reference / "stage3", "resumed": stage, "interrupted": interrupted, "log": run.stderr}


def test_a_killed_and_resumed_run_ends_as_an_uninterrupted_one(runs):
    interrupted = runs["interrupted"]
    checkpoint = runs["resumed"] / f"checkpoint-{interrupted['step']}"
    assert f"Resuming Stage 3 from {checkpoint}: step {interrupted['step']}" in runs["log"]
    assert interrupted["batch"] > 0  # mid-epoch
    assert_same_weights(runs["reference"] / "last", runs["resumed"] / "last")
    assert_same_weights(runs["reference"] / "best", runs["resumed"] / "best")
    reference, resumed = results(runs["reference"]), results(runs["resumed"])
    assert [row["step"] for row in reference] == [row["step"] for row in resumed]
    for before, after in zip(reference, resumed):
        assert {k: float(v) for k, v in before.items() if k != "split"} == pytest.approx(
            {k: float(v) for k, v in after.items() if k != "split"}, abs=1e-6)


def test_the_resumed_run_continues_the_same_wandb_run_and_keeps_the_checkpoint_limit(runs):
    stage = runs["resumed"]
    final = json.loads((stage / (stage / LATEST).read_text().strip() / STATE_DIR / "state.json").read_text())
    assert final["wandb_run_id"] == runs["interrupted"]["wandb_run_id"] is not None
    assert len(list(stage.glob("checkpoint-*"))) == 2
    assert not list(stage.glob(".checkpoint-*"))  # no staging directory left behind


def test_stage1_learned_temperature_is_saved_and_restored(tmp_path):
    """The contrastive temperature is the objective's, not the model's: the checkpoint must carry it."""
    from ember_train.args import TrainArgs
    from ember_train.checkpointing import latest_checkpoint
    from ember_train.distributed import DistributedContext
    from ember_train.stage1 import AlignmentStage
    from ember_train.trainer import Trainer

    subprocess.run([sys.executable, str(REPO / "tools" / "make_smoke_data.py"), str(tmp_path / "data")], check=True,
                   capture_output=True)
    args = TrainArgs(stage="1", stage1_data=str(tmp_path / "data" / "stage1"), model_config="tiny", stage1_epochs=1,
                     batch_size=4, gradient_accumulation=1, max_steps=2, learning_rate=0.05, wandb="disabled",
                     output_dir=str(tmp_path / "out"))
    ctx = DistributedContext.from_environment(device="cpu")
    trained = AlignmentStage(args, ctx, init_from=None)
    Trainer(trained).train()
    learned = trained.objective.contrastive.log_temperature.item()
    checkpoint = latest_checkpoint(tmp_path / "out" / "stage1")
    resumed = AlignmentStage(args, ctx, init_from=str(checkpoint))
    assert resumed.objective.contrastive.log_temperature.item() != learned  # a new objective starts from the default
    Trainer(resumed, resume_from=checkpoint).train()  # already at --max_steps: restores, trains nothing
    assert resumed.objective.contrastive.log_temperature.item() == learned


def test_resume_names_one_stages_checkpoint_or_finds_each_stages_latest(tmp_path):
    from ember_train.args import TrainArgs
    from ember_train.pipeline import resume_checkpoint

    with pytest.raises(ValueError, match="--resume auto to continue every stage"):
        resume_checkpoint(TrainArgs(stage="all", resume=str(tmp_path / "checkpoint-4")), 1)
    assert resume_checkpoint(TrainArgs(resume="auto", output_dir=str(tmp_path)), 3) is None
    (tmp_path / "stage3").mkdir()
    (tmp_path / "stage3" / LATEST).write_text("checkpoint-8\n")
    assert resume_checkpoint(TrainArgs(resume="auto", output_dir=str(tmp_path)), 3) == tmp_path / "stage3" / "checkpoint-8"
