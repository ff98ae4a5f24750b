"""The `ember robots` subcommands (list, show, validate), `ember model info` on a saved model, and flag rules."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

from conftest import REPO, SNAKE_PLUGIN
from ember_core.cli import build_parser, main
from ember_core.model.loading import file_sha


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_is_the_fleet_in_order(capsys):
    code, out, _ = run(capsys, "robots", "list", "--json")
    robots = json.loads(out)
    assert code == 0
    assert [r["id"] for r in robots] == ["drone", "underwater_robot", "humanoid", "robot_with_wheels", "robot_with_legs"]
    assert set(robots[0]) == {"id", "name", "capabilities", "limitations", "environments"}
    assert robots[1]["environments"] == ["underwater", "marine", "pools", "pipes", "ocean exploration"]


def test_list_table_shows_index_id_name_and_hash(capsys):
    code, out, _ = run(capsys, "robots", "list")
    assert code == 0
    assert "5 robots, hash " in out
    assert any(line.split()[:3] == ["1", "underwater_robot", "Underwater"] for line in out.splitlines())


def test_adding_a_sixth_robot_shows_in_list(capsys, write_plugin, write_robots, default_robots_lines):
    write_plugin("snake_robot", SNAKE_PLUGIN)
    path = write_robots(default_robots_lines + ["  - plugin: snake_robot"])
    code, out, _ = run(capsys, "robots", "list", "--json", "--robots", str(path))
    assert code == 0 and len(json.loads(out)) == 6 and json.loads(out)[5]["name"] == "Snake Robot"


def test_show_prints_the_card_by_id_or_name(capsys):
    code, out, _ = run(capsys, "robots", "show", "Robot with Wheels")
    assert code == 0
    assert out.startswith("Robot with Wheels (robot_with_wheels), index 3 of 5")
    assert "limitations: flat surfaces only, limited climbing, obstacle avoidance" in out
    code, out, _ = run(capsys, "robots", "show", "humanoid", "--json")
    assert json.loads(out)["roles"] == ["manipulation", "tool operation", "assisting people"]


def test_show_unknown_robot_is_an_error_listing_the_fleet(capsys):
    code, out, err = run(capsys, "robots", "show", "tank")
    assert code == 2 and out == ""
    assert "ember: error: unknown robot 'tank'; this fleet has: drone, underwater_robot" in err


def test_validate_reports_ok_and_errors(capsys, write_robots, default_robots_lines):
    code, out, _ = run(capsys, "robots", "validate", str(write_robots(default_robots_lines)))
    assert code == 0 and out.startswith("OK ") and "5 robots (drone, underwater_robot" in out
    bad = write_robots(["  - plugin: ember_plugins.drone", "  - plugin: ember_plugins.drone"], "bad.yaml")
    code, out, err = run(capsys, "robots", "validate", str(bad))
    assert code == 2 and "duplicate robot id 'drone'" in err and str(bad) in err


def test_flags_are_never_type_bool():
    """argparse's type=bool turns the string "False" into True; flags must be store_true/false."""
    seen = []

    def walk(parser):
        for action in parser._actions:
            assert action.type is not bool, action.dest
            seen.append(action.dest)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
    walk(build_parser())
    assert {"json", "reasoning", "mixed_precision", "images"} <= set(seen)


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["robots"])
    assert caught.value.code == 2


def test_model_info_describes_a_saved_model_with_its_processor(capsys, tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "calibrated")
    config = json.loads((model_dir / "processor_config.json").read_text())
    config["calibration"] = {"scale": 2.0, "margin": 1.5, "bias": -0.5}
    (model_dir / "processor_config.json").write_text(json.dumps(config))
    code, out, _ = run(capsys, "model", "info", "--model", str(model_dir), "--json")
    info = json.loads(out)
    assert code == 0
    assert info["name"] == "tiny:calibrated" and info["sha"] == file_sha(model_dir / "model.safetensors")
    assert info["calibration"] == config["calibration"] and info["vocab_size"] == 50262
    assert info["config"]["robot_ids"] == info["fleet"]["robots"] == ["drone", "underwater_robot", "humanoid",
                                                                      "robot_with_wheels", "robot_with_legs"]


def test_model_info_lays_a_saved_model_out_for_another_fleet(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "model", "info", "--model", str(tiny_model_dir), "--json",
                       "--robots", str(REPO / "tests" / "data" / "robots_with_snake.yaml"))
    info = json.loads(out)
    assert code == 0 and info["config"]["robot_ids"][-1] == info["fleet"]["robots"][-1] == "snake_robot"
    assert len(info["config"]["robot_ids"]) == 6


def test_model_info_table_and_unknown_preset(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "model", "info", "--model", str(tiny_model_dir))
    assert code == 0 and out.startswith("tiny:tiny: ") and "vocabulary 50262" in out
    assert "Fleet: drone, underwater_robot" in out and out.rstrip().endswith("calibration scale 1, margin 0, bias +0")
    with pytest.raises(SystemExit) as caught:
        main(["model", "info", "--preset", "huge"])
    assert caught.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
