"""The README's C++ consumer callback compiles against the ember_msgs headers installed in this environment and prints
what a fleet manager would dispatch."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_readme import _example

pytest.importorskip("ember_msgs", reason="ember_msgs is not built (make install builds it)")
COMPILER = shutil.which("g++") or shutil.which("c++")

MAIN = r"""
#include "on_selection.hpp"

int main()
{
  ember_msgs::msg::Selection result;
  result.request_id = "job-17";
  result.status = "ok";
  for (const char * id : {"drone", "robot_with_legs", "humanoid"}) {
    ember_msgs::msg::Candidate candidate;
    candidate.robot_id = id;
    candidate.selected = std::string(id) != "humanoid";
    result.candidates.push_back(candidate);
  }
  ember_msgs::msg::Plan plan;
  ember_msgs::msg::Subtask step;
  step.order = 1; step.robot_id = "drone"; step.description = "Fly over the ridge";
  plan.subtasks.push_back(step);
  step.order = 2; step.robot_id = "robot_with_legs"; step.description = "carry the kit up the trail";
  plan.subtasks.push_back(step);
  result.plan.push_back(plan);
  on_selection(result);
  result.status = ember_msgs::msg::Selection::STATUS_NO_IMAGE;
  on_selection(result);
}
"""


@pytest.mark.skipif(COMPILER is None, reason="no C++ compiler (the ember_msgs build needs one too)")
def test_the_readme_cpp_callback_compiles_and_prints_the_dispatch(tmp_path):
    (tmp_path / "on_selection.hpp").write_text(_example("on_selection.hpp"), encoding="utf-8")
    (tmp_path / "main.cpp").write_text(MAIN, encoding="utf-8")
    include = Path(sys.prefix) / "include"
    # Each package installs its headers under include/<package>/<package>/..., as ROS 2 does.
    flags = [f"-I{directory}" for directory in sorted(include.iterdir()) if directory.is_dir()]
    subprocess.run([COMPILER, "-std=c++17", "-Wall", "-Werror", *flags, "main.cpp", "-o", "consumer"], cwd=tmp_path,
                   check=True, capture_output=True, text=True)
    output = subprocess.run([str(tmp_path / "consumer")], check=True, capture_output=True, text=True).stdout
    assert output.splitlines() == ["job-17: dispatch drone robot_with_legs", "  1. drone: Fly over the ridge",
                                   "  2. robot_with_legs: carry the kit up the trail", "job-17: no_image"]
