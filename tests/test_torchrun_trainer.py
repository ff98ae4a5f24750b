"""The real trainer under `torchrun --standalone --nproc_per_node=2` (gloo, CPU) against one process on the same
global batch, and a 2-process run with dropout killed with SIGKILL mid-epoch and resumed against an uninterrupted one.

Stage 3 runs `python -m ember_train --distributed` with batch 4 on each of 2 ranks, and in one process with batch 8;
both accumulate 2 batches per update. DistributedSampler gives rank r the positions r, r + 2, r + 4, ... of an epoch's
permutation (the same permutation one process walks), so at every step the two ranks' batches of 4 hold positions
8k .. 8k + 7 between them: one process's batch k. Each loss term is a mean over its items in the whole update
(tasks, or the explanation's decision points, of both micro-batches on both ranks: `ember_train.update_loss`), so
the ranks' summed gradients and the loss the trainer logs (over the step's items on both ranks) are those of the
8-task batches. The tasks have different numbers of decision points (checked), which a mean per micro-batch and
per rank would weigh unequally.

Equality needs the model's output for a sample to depend on nothing but the sample, so the runs remove what
ties it to the rest of its batch or to the random stream:
- dropout: each process draws masks for its own rows; the runs start from a tiny model saved with
  `head_dropout=0` and `lm_dropout=0` (`--init_from`);
- BatchNorm: in training mode each process normalises by its own batch's statistics (there is no SyncBatchNorm
  on CPU), so the vision encoder is frozen (`--stage3_part_lr vision=0`), which keeps BatchNorm on its running
  statistics; the projector, language model, explanation adapter and head train.
Image dropout is drawn from the seed, the epoch and the sample's index, the same in any number of processes.
What remains is float32 summation order (batches of 4 and 8, the all-reduce): about 1e-7, against updates of 1e-2.

The kill-and-resume runs keep dropout: each rank draws its own masks (seeded by seed + rank), so the
checkpoint must hold, and each rank restore, its own random state.

Stage 1 is left out here: its contrastive loss takes its negatives from the rank's own batch, so 2 ranks of 4 have
no one-process equivalent; tests/test_train_stages.py checks that its ranks end identical.
"""
from __future__ import annotations

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
from test_resume import assert_same_weights, results

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
ENV = {key: value for key, value in os.environ.items() if key not in TORCHRUN_VARIABLES} | {
    "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "DISABLE_WANDB": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# One template per robot; their explanations have 8 to 13 decision points.
TEMPLATES = {"underwater_robot": "Inspect the hull of ship {i} under the sea", "drone": "Survey rooftop {i} from above",
             "humanoid": "Open door {i} and greet visitors inside the office",
             "robot_with_wheels": "Carry boxes to shelf {i} in the warehouse",
             "robot_with_legs": "Climb rocky slope {i} with sensors"}
GLOBAL_BATCH = 8


def write_inputs(base: Path) -> tuple[Path, Path, Path]:
    """The tasks (40: 32 train, 4 val, 4 test) and a tiny model to start from, without dropout and with it (the
    preset's); checks that the tasks' numbers of decision points differ."""
    from ember_core import load_fleet
    from ember_core.model.config import preset
    from ember_core.pretrained import build_model, save_pretrained
    from ember_train.batches import SelectionDataset, collate
    from ember_train.data import load_records

    data = base / "tasks.jsonl"
    data.write_text("".join(json.dumps({"task": template.format(i=i), "robots": [robot]}) + "\n"
                            for robot, template in TEMPLATES.items() for i in range(8)))
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", head_dropout=0.0, lm_dropout=0.0), load_fleet())
    save_pretrained(model, processor, base / "init")
    torch.manual_seed(0)
    save_pretrained(*build_model(preset("tiny"), load_fleet()), base / "init_dropout")
    tasks = SelectionDataset(load_records(data, processor.fleet), processor)
    counts = set(collate([tasks[index] for index in range(len(tasks))], processor)["choice_mask"].sum(1).tolist())
    assert len(counts) > 1, f"decision points per task: {counts}; choose templates with different counts"
    return data, base / "init", base / "init_dropout"


def stage3_command(data: Path, init: Path, output: Path, batch_size: int, *extra: str) -> list[str]:
    """Stage 3 for 2 epochs of 32 tasks: 4 batches per epoch (of 4 on each of 2 ranks, or of 8 in one process),
    an update every 2, a checkpoint every 2 batches, validation every 4 batches, each an epoch's end (once a step)."""
    return ["-m", "ember_train", "--stage", "3", "--robot_data", str(data), "--init_from", str(init),
            "--stage3_part_lr", "vision=0", "--augment_factor", "1", "--stage3_robot_epochs", "2",
            "--batch_size", str(batch_size), "--gradient_accumulation", "2", "--learning_rate", "1e-3",
            "--explanation_epochs", "0", "--eval_steps", "4", "--save_steps", "2", "--log_steps", "1",
            "--device", "cpu", "--wandb", "disabled", "--output_dir", str(output), *extra]


def two_processes(data: Path, init: Path, output: Path) -> list[str]:
    """The Stage 3 run under torchrun: batch 4 on each of 2 ranks."""
    return TORCHRUN + stage3_command(data, init, output, GLOBAL_BATCH // 2, "--distributed")


def run(command: list[str]) -> str:
    """Run to the end; its log (stderr)."""
    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-3000:]
    return finished.stderr


def kill_with_workers(launcher: subprocess.Popen) -> None:
    """SIGKILL torchrun's workers and then torchrun, and wait until the workers are gone. torchrun starts each
    worker in a session of its own, so killing torchrun or its process group would leave them training."""
    workers = [int(pid) for children in Path(f"/proc/{launcher.pid}/task").glob("*/children")
               for pid in children.read_text().split()]
    assert len(workers) == 2, f"torchrun's children: {workers}"
    for pid in workers + [launcher.pid]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a killed process waiting to be reaped is a zombie, state Z)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def losses(stage: Path) -> dict[int, float]:
    """The training loss of every step (over the step's items on both ranks) by step, from the final checkpoint."""
    final = json.loads((stage / (stage / LATEST).read_text().strip() / STATE_DIR / "state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in final["history"] if "loss" in entry}


def assert_same_results(first: Path, second: Path, tolerance: float) -> None:
    """The two stages' results.csv have the same rows (step, epoch, split) with metrics within `tolerance`."""
    rows, others = results(first), results(second)
    assert [row["split"] for row in rows] == [row["split"] for row in others]
    for row, other in zip(rows, others):
        assert {k: float(v) for k, v in other.items() if k != "split"} == pytest.approx(
            {k: float(v) for k, v in row.items() if k != "split"}, abs=tolerance)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("torchrun")
    data, init, init_dropout = write_inputs(base)
    return {"init": init, "init_dropout": init_dropout, "data": data, "base": base,
            "one_log": run([sys.executable] + stage3_command(data, init, base / "one", GLOBAL_BATCH)),
            "two_log": run(two_processes(data, init, base / "two")),
            "one": base / "one" / "stage3", "two": base / "two" / "stage3"}


@pytest.fixture(scope="module")
def with_dropout(runs) -> Path:
    """The uninterrupted 2-process run from the model with dropout: its Stage 3 directory."""
    run(two_processes(runs["data"], runs["init_dropout"], runs["base"] / "dropout"))
    return runs["base"] / "dropout" / "stage3"


def test_two_ranks_end_with_identical_weights(runs):
    assert "32 samples, 2 process(es) x batch 4 x accumulation 2: 4 optimizer updates" in runs["two_log"]
    assert "Weights identical on all 2 ranks after 8 steps" in runs["two_log"]


def test_two_ranks_train_as_one_process_on_the_same_global_batch(runs):
    assert "32 samples, 1 process(es) x batch 8 x accumulation 2: 4 optimizer updates" in runs["one_log"]
    one, two = losses(runs["one"]), losses(runs["two"])
    assert list(one) == list(two) == list(range(1, 9))
    torch.testing.assert_close(torch.tensor(list(two.values())), torch.tensor(list(one.values())), rtol=1e-5, atol=1e-6)
    single, distributed = (load_file(runs[name] / "last" / "model.safetensors") for name in ("one", "two"))
    initial = load_file(runs["init"] / "model.safetensors")
    assert single.keys() == distributed.keys()
    for name, value in single.items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-4, atol=1e-5, msg=name)
    moved = max((value.float() - initial[name].float()).abs().max().item() for name, value in single.items()
                if value.is_floating_point())
    assert moved > 1e-3, "training did not move the weights beyond the tolerance"
    assert [(row["step"], row["split"]) for row in results(runs["one"])] == [("4", "val"), ("8", "val"), ("8", "test")]
    assert_same_results(runs["one"], runs["two"], tolerance=1e-5)


def test_a_two_process_run_killed_mid_epoch_resumes_to_the_uninterrupted_end(runs, with_dropout):
    """The launcher and both ranks are killed together (a lost machine) once checkpoint-6, epoch 1's batch 2, is
    the latest; `--resume auto` with 2 processes must end as the uninterrupted 2-process run, dropout masks and all."""
    output = runs["base"] / "resumed"
    command = two_processes(runs["data"], runs["init_dropout"], output)
    killed = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage, deadline = output / "stage3", time.monotonic() + 300
    while killed.poll() is None and time.monotonic() < deadline:
        if (stage / LATEST).is_file() and (stage / LATEST).read_text().strip() == "checkpoint-6":
            break
        time.sleep(0.02)
    assert killed.poll() is None, "the run ended before it could be killed"
    kill_with_workers(killed)
    assert killed.wait() == -signal.SIGKILL
    interrupted = json.loads((stage / "checkpoint-6" / STATE_DIR / "state.json").read_text())
    assert (interrupted["epoch"], interrupted["batch"]) == (1, 2)
    assert not (stage / "last").exists()
    log = run(command + ["--resume", "auto"])
    assert f"Resuming Stage 3 from {stage / 'checkpoint-6'}: step 6, epoch 1, batch 2" in log
    assert "Weights identical on all 2 ranks after 8 steps" in log
    assert_same_weights(with_dropout / "last", stage / "last")
    assert_same_weights(with_dropout / "best", stage / "best")
    assert losses(stage) == pytest.approx(losses(with_dropout), abs=1e-6)
    assert_same_results(with_dropout, stage, tolerance=1e-6)
