"""The README's "add a sixth robot" example, run verbatim: plugin file, robots.yaml line, command."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from ember_core import TaskContext, load_fleet


def _example(label: str) -> str:
    """The fenced block that follows `<!-- example: LABEL -->` in README.md."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {re.escape(label)} -->\n```\w*\n(.*?)```", readme, re.S)
    assert match, f"README.md has no example block labelled {label!r}"
    return match.group(1)


def test_readme_plugin_example_grows_the_fleet_to_six(tmp_path: Path):
    (tmp_path / "snake_robot.py").write_text(_example("snake_robot.py"), encoding="utf-8")
    robots_yaml = (REPO / "robots.yaml").read_text(encoding="utf-8").rstrip("\n") + "\n"
    (tmp_path / "robots.yaml").write_text(robots_yaml + _example("robots.yaml line"), encoding="utf-8")

    command = shlex.split(_example("command").strip())
    assert command[0] == "ember"
    executable = Path(sys.executable).with_name("ember")
    result = subprocess.run([str(executable), *command[1:]], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "6 robots" in result.stdout
    assert re.search(r"^5\s+snake_robot\s+Snake Robot\s+pipes, crevices, rubble, ducts$", result.stdout, re.M)

    validate = subprocess.run([str(executable), "robots", "show", "snake_robot", "--robots", "robots.yaml"],
                              cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "index 5 of 6" in validate.stdout and "max_speed_mps: 0.2" in validate.stdout
    assert "examples: 4\n    - Crawl through the ventilation duct" in validate.stdout
    assert "... 1 more (--json lists them all)" in validate.stdout
    assert "  excluded_scenes: aerial, underwater\n  required_scenes: -\n" in validate.stdout

    fleet = load_fleet(tmp_path / "robots.yaml")
    assert fleet.infeasible(TaskContext(task="x", scene=frozenset({"underwater"})))["snake_robot"] == [
        "Snake Robot cannot operate under water"]
    assert "snake_robot" not in fleet.infeasible(TaskContext(task="x", scene=frozenset({"indoor", "rough_terrain"})))


def test_security_table_states_the_limits_in_ember_core_limits():
    from ember_core import limits

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", readme.split("## Security", 1)[1].split("\n## ", 1)[0], re.M))
    assert rows["image formats"] == ", ".join(limits.IMAGE_FORMATS)
    assert rows["image file or message size"] == f"{limits.MAX_IMAGE_BYTES // 2**20} MiB"
    assert rows["image pixels (width x height)"] == f"{limits.MAX_IMAGE_PIXELS:,}"
    assert rows["JSON message size / nesting"] == f"{limits.MAX_JSON_BYTES // 1024} KiB / {limits.MAX_JSON_DEPTH} levels"
    assert rows["robots.yaml size / nesting / aliases / values with aliases expanded"] == (
        f"{limits.MAX_YAML_BYTES // 2**20} MiB / {limits.MAX_YAML_DEPTH} levels / {limits.MAX_YAML_ALIASES} / "
        f"{limits.MAX_YAML_NODES:,}")
    assert rows["plugin hook time before a warning"] == f"{limits.HOOK_TIME_BUDGET_S:g} s"
    assert rows["`top_k`"] == f"1 to {limits.MAX_TOP_K}"
    assert rows["parts of a task scored for a team"] == f"{limits.MAX_TASK_PARTS} (the rest join the eighth)"
    assert rows["HTTP request body / requests in one `POST /select/batch` (`ember serve`)"] == (
        f"{limits.MAX_HTTP_BODY_BYTES:,} bytes / {limits.MAX_HTTP_BATCH}")
