"""`ember train`'s settings: flags generated from TrainArgs in both spellings, switches, and a --config file
(every flag, `stage` included, converted as the flag would be) under the flags given on the command line."""
from __future__ import annotations

import pytest

from ember_core.cli import build_parser
from ember_train.args import TrainArgs
from ember_train.cli import train_args


def settings(*argv: str) -> TrainArgs:
    return train_args(build_parser().parse_args(["train", *argv]))


def test_snake_and_kebab_spellings_set_the_same_setting():
    snake = settings("--robot_data", "tasks.jsonl", "--batch_size", "4", "--mixed_precision", "bf16")
    kebab = settings("--robot-data", "tasks.jsonl", "--batch-size", "4", "--mixed-precision", "bf16")
    assert snake == kebab and kebab.robot_data == "tasks.jsonl" and kebab.batch_size == 4


def test_switches_take_no_value_and_can_be_turned_off():
    assert not settings().distributed and not settings().gradient_checkpointing
    on = settings("--distributed", "--gradient_checkpointing")
    assert on.distributed and on.gradient_checkpointing
    assert not settings("--distributed", "--no-distributed").distributed
    assert settings("--gradient-checkpointing").gradient_checkpointing


def test_the_seed_command_line_parses_as_written():
    args = settings(*"""--output_dir ./outputs --stage all --distributed --mixed_precision bf16 --batch_size 32
        --learning_rate 2e-4 --gradient_accumulation 4 --save_steps 500 --log_steps 50 --eval_steps 500
        --stage1_data data/base_vlm --stage2_data data/base_vlm/llava --robot_data robot-selection-dataset
        --stage1_epochs 3 --stage2_epochs 3 --stage3_robot_epochs 30 --num_workers 2""".split())
    assert (args.stage, args.learning_rate, args.log_steps, args.stage2_data, args.num_workers) == (
        "all", 2e-4, 50, "data/base_vlm/llava", 2)


def test_stage_defaults_to_3_and_takes_1_2_3_or_all(capsys):
    assert settings().stage == "3"
    with pytest.raises(SystemExit):
        settings("--stage", "4")
    assert "invalid choice: '4'" in capsys.readouterr().err


def test_a_config_file_takes_every_flag_including_stage_and_the_command_line_wins(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("stage: 3\nlearning_rate: 2e-4\nrobot-data: tasks.jsonl\ndistributed: true\n"
                      "stage1_part_lr: vision=0\nseed: null\n", encoding="utf-8")
    args = settings("--config", str(config))
    assert (args.stage, args.learning_rate, args.robot_data, args.distributed, args.stage1_part_lr, args.seed) == (
        "3", 2e-4, "tasks.jsonl", True, "vision=0", 0)
    assert settings("--config", str(config), "--stage", "all", "--no-distributed").stage == "all"
    assert not settings("--config", str(config), "--no-distributed").distributed


@pytest.mark.parametrize("line, message", [
    ("stages: 3", r"unknown key 'stages'; the keys are the flag names"),
    ("stage: 4", r"stage must be one of 1, 2, 3, all, got 4"),
    ("batch_size: 2.5", r"batch_size must be a int, got 2.5"),
    ("learning_rate: fast", r"learning_rate must be a float, got 'fast'"),
    ("distributed: 1", r"distributed must be true or false, got 1"),
])
def test_a_config_file_value_that_is_not_the_flags_is_refused_naming_file_and_key(tmp_path, line, message):
    config = tmp_path / "run.yaml"
    config.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{config}: {message}"):
        settings("--config", str(config))


def test_kfold_cross_validates_stage_3_only():
    with pytest.raises(ValueError, match="--kfold cross-validates Stage 3; it cannot run with --stage all"):
        settings("--kfold", "3", "--stage", "all")
