"""The hand-written task sets in tests/data: novel phrasings for the default fleet (a report set and a
development set for choosing training settings), and snake-robot tasks."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ember_train.public_data import PUBLIC_DATA
from ember_core import Fleet, TaskContext, load_fleet
from ember_core.prompt import fleet_text
from ember_train.data import TaskRecord, load_jsonl, load_public, task_key
from ember_train.new_robot_encoder import read_robot_kinds

DATA = Path(__file__).resolve().parent / "data"
NOVEL_FILE = DATA / "novel_tasks.jsonl"
NOVEL_DEV_FILE = DATA / "novel_dev_tasks.jsonl"
NOVEL_DEV2_FILE = DATA / "novel_dev2_tasks.jsonl"
SNAKE_FILE = DATA / "snake_tasks.jsonl"
SNAKE_FLEET_FILE = DATA / "robots_with_snake.yaml"


@pytest.fixture(scope="module")
def snake_fleet() -> Fleet:
    return load_fleet(SNAKE_FLEET_FILE)


@pytest.fixture(scope="module")
def novel(fleet: Fleet) -> list[TaskRecord]:
    return load_jsonl(NOVEL_FILE, fleet)


@pytest.fixture(scope="module")
def novel_dev(fleet: Fleet) -> list[TaskRecord]:
    return load_jsonl(NOVEL_DEV_FILE, fleet)


@pytest.fixture(scope="module")
def novel_dev2(fleet: Fleet) -> list[TaskRecord]:
    return load_jsonl(NOVEL_DEV2_FILE, fleet)


@pytest.fixture(scope="module")
def snake_tasks(snake_fleet: Fleet) -> list[TaskRecord]:
    return load_jsonl(SNAKE_FILE, snake_fleet)


def _data_lines(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _whole_set(path: Path, fleet: Fleet) -> list[TaskRecord]:
    """The set's records, checking that its file starts with a '#' comment and holds no task twice (load_jsonl
    merges lines with the same task_key, so fewer records than lines means a duplicate)."""
    records = load_jsonl(path, fleet)
    assert path.read_text(encoding="utf-8").startswith("#") and len(records) == _data_lines(path), path.name
    return records


def test_files_start_with_a_comment_and_hold_no_duplicate_task(fleet, snake_fleet):
    for path, set_fleet in ((NOVEL_FILE, fleet), (NOVEL_DEV_FILE, fleet), (NOVEL_DEV2_FILE, fleet),
                           (SNAKE_FILE, snake_fleet)):
        _whole_set(path, set_fleet)


def test_novel_tasks_cover_every_robot_of_the_default_fleet(novel, novel_dev, novel_dev2, fleet):
    for records, tasks, per_robot in ((novel, 70, 10), (novel_dev, 40, 8), (novel_dev2, 48, 8)):
        assert len(records) >= tasks
        counts = {robot_id: sum(robot_id in record.robots for record in records) for robot_id in fleet.ids}
        assert all(count >= per_robot for count in counts.values()), counts


def test_development_tasks_are_not_report_tasks(novel, novel_dev, novel_dev2, snake_tasks):
    report = {task_key(record.task) for record in novel + snake_tasks}
    assert not [record.task for record in novel_dev + novel_dev2 if task_key(record.task) in report]


def test_snake_robot_is_acceptable_in_every_snake_task(snake_tasks, snake_fleet):
    assert len(snake_tasks) >= 20
    assert snake_fleet.ids[-1] == "snake_robot"
    missing = [record.task for record in snake_tasks if "snake_robot" not in record.robots]
    assert not missing


def test_no_task_is_a_public_task(novel, novel_dev, novel_dev2, snake_tasks, fleet):
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    public = {task_key(record.task) for record in load_public(PUBLIC_DATA, fleet)}
    copied = [record.task for record in novel + novel_dev + novel_dev2 + snake_tasks
              if task_key(record.task) in public]
    assert not copied


def test_snake_plugin_has_a_full_card_and_is_not_in_the_default_fleet(snake_fleet, fleet):
    snake = snake_fleet.robot("Snake Robot")
    assert snake.id == "snake_robot" and snake_fleet.index("snake_robot") == 5
    assert snake.description and snake.capabilities and snake.limitations and snake.environments and snake.roles
    assert snake.max_speed_mps is not None and snake.max_speed_mps > 0
    assert "Snake Robot:" in fleet_text(snake_fleet)
    assert "snake_robot" not in fleet


def _content_words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z]+", text.lower()) if len(word) > 2} - _FUNCTION_WORDS


_FUNCTION_WORDS = set("the and for from with into onto over under down off are its this that these those our your "
                      "their can should which who what where when how some any all each every not does did has have "
                      "had will would may might must just there here".split())


def _by_words(texts: list[str]) -> dict[str, set[str]]:
    return {text: _content_words(text) for text in texts}


def _close(task: str, written: dict[str, set[str]]) -> str | None:
    """The first text of `written` (`_by_words`) that shares half its content words with `task` (Jaccard >= 0.5), or
    None. Failures name it and the task's place, never the task, so that no report-set task is read when a check fails."""
    words = _content_words(task)
    return next((text for text, other in written.items() if len(words & other) / len(words | other) >= 0.5), None)


def test_card_examples_are_not_copies_of_report_tasks(novel, snake_tasks, snake_fleet):
    """The example requests on the cards are what the model matches; the report sets must not be among them."""
    examples = _by_words([text for robot in snake_fleet for text in robot.examples])
    for name, records in ((NOVEL_FILE.name, novel), (SNAKE_FILE.name, snake_tasks)):
        for number, record in enumerate(records, 1):
            assert not _close(record.task, examples), f"{name}, task {number}, is close to {_close(record.task, examples)!r}"


@pytest.mark.parametrize(("tag", "reason"), [("aerial", "Snake Robot cannot operate at height or from the air"),
                                             ("underwater", "Snake Robot cannot operate under water")])
def test_snake_card_vetoes_only_itself_in_an_aerial_or_underwater_scene(snake_fleet, tag, reason):
    vetoes = snake_fleet.infeasible(TaskContext(task="x", scene=frozenset({tag})))
    assert vetoes["snake_robot"] == [reason]
    others = [reason for robot_id, reasons in vetoes.items() if robot_id != "snake_robot" for reason in reasons]
    assert not any("Snake Robot" in reason for reason in others)


@pytest.mark.parametrize("scene", [frozenset(), frozenset({"indoor"}), frozenset({"outdoor", "rough_terrain"})])
def test_snake_card_has_no_objection_on_dry_land(snake_fleet, scene):
    assert "snake_robot" not in snake_fleet.infeasible(TaskContext(task="x", scene=scene))


TEAM_FILES = {"team_dev_tasks.jsonl": 450, "team_tasks.jsonl": 60}
# Single-robot jobs that mention two places, and (development only) single-robot jobs told in several steps.
SINGLE_ROBOT_FILES = {"two_place_dev_tasks.jsonl": 40, "two_place_tasks.jsonl": 60, "steps_dev_tasks.jsonl": 449}


def test_team_and_single_robot_sets_are_what_their_names_say(fleet):
    """Team jobs name two robots or more in order; single-robot jobs name none; the development and report
    sets share no task, and none is a public or a novel-set task."""
    sets = {name: _whole_set(DATA / name, fleet) for name in {**TEAM_FILES, **SINGLE_ROBOT_FILES}}
    for name, records in sets.items():
        assert len(records) == {**TEAM_FILES, **SINGLE_ROBOT_FILES}[name]
        assert all((len(record.team) >= 2) == (name in TEAM_FILES) for record in records), name
    keys = {name: {task_key(record.task) for record in records} for name, records in sets.items()}
    assert not keys["team_dev_tasks.jsonl"] & keys["team_tasks.jsonl"]
    assert not (keys["two_place_dev_tasks.jsonl"] | keys["steps_dev_tasks.jsonl"]) & keys["two_place_tasks.jsonl"]
    others = {task_key(record.task) for path in (NOVEL_FILE, NOVEL_DEV_FILE) for record in load_jsonl(path, fleet)}
    if PUBLIC_DATA.is_dir():
        others |= {task_key(record.task) for record in load_public(PUBLIC_DATA, fleet)}
    assert not set().union(*keys.values()) & others


def test_the_fresh_snake_report_set_is_new_and_names_the_snake_in_every_task(snake_fleet):
    """Written for the short-card work before any tuning: report only, sharing no task with the other sets."""
    path = DATA / "snake_fresh_tasks.jsonl"
    fresh = _whole_set(path, snake_fleet)
    assert len(fresh) >= 25
    assert all("snake_robot" in record.robots for record in fresh)
    older = {task_key(record.task) for name in ("snake_tasks.jsonl", "snake_dev_tasks.jsonl")
             for record in load_jsonl(DATA / name, snake_fleet)}
    assert not {task_key(record.task) for record in fresh} & older


HOLDOUT_FILES = {"novel_holdout_tasks.jsonl": 200, "snake_holdout_tasks.jsonl": 120}


def test_the_holdout_report_sets_are_new_and_what_their_names_say(fleet, snake_fleet):
    """Written after every setting was chosen, blind to every other set: the novel holdout set covers every
    robot of the default fleet (and no task is the snake's), the snake holdout set names the snake in every
    task; neither shares a task with another set or the public data, nor half its content words with a card example."""
    novel = _whole_set(DATA / "novel_holdout_tasks.jsonl", fleet)
    snake = _whole_set(DATA / "snake_holdout_tasks.jsonl", snake_fleet)
    assert (len(novel), len(snake)) == tuple(HOLDOUT_FILES.values())
    counts = {robot_id: sum(robot_id in record.robots for record in novel) for robot_id in fleet.ids}
    assert all(count >= 15 for count in counts.values()), counts
    assert all("snake_robot" in record.robots for record in snake)
    others = {task_key(record.task) for path in DATA.glob("*.jsonl") if path.name not in HOLDOUT_FILES
              for record in load_jsonl(path, snake_fleet)}
    if PUBLIC_DATA.is_dir():
        others |= {task_key(record.task) for record in load_public(PUBLIC_DATA, fleet)}
    keys = [task_key(record.task) for record in novel + snake]
    assert len(set(keys)) == len(keys) and not set(keys) & others
    examples = _by_words([text for robot in snake_fleet for text in robot.examples])
    for name, records in zip(HOLDOUT_FILES, (novel, snake)):
        for number, record in enumerate(records, 1):
            assert not _close(record.task, examples), f"{name}, task {number}, is close to {_close(record.task, examples)!r}"


@pytest.mark.parametrize(("snake_set", "near_set", "sizes"), [
    ("snake_dev_tasks.jsonl", "near_snake_dev_tasks.jsonl", (72, 60)),
    ("snake_dev2_tasks.jsonl", "near_snake_dev2_tasks.jsonl", (120, 120))])
def test_the_snake_development_sets_say_what_they_are_and_share_no_task_with_a_report_set(snake_fleet, snake_set,
                                                                                          near_set, sizes):
    """snake_dev*_tasks.jsonl: the snake is acceptable in every task; near_snake_dev*_tasks.jsonl: tasks that sound
    like its work but are another robot's, so it is in none; neither shares a task with a report or public set."""
    sets = {name: _whole_set(DATA / name, snake_fleet) for name in (snake_set, near_set)}
    assert (len(sets[snake_set]), len(sets[near_set])) == sizes
    assert all("snake_robot" in record.robots for record in sets[snake_set])
    assert not any("snake_robot" in record.robots for record in sets[near_set])
    report = {task_key(record.task) for name in ("snake_tasks.jsonl", "snake_fresh_tasks.jsonl", "novel_tasks.jsonl")
              for record in load_jsonl(DATA / name, snake_fleet)}
    if PUBLIC_DATA.is_dir():
        report |= {task_key(record.task) for record in load_public(PUBLIC_DATA, snake_fleet)}
    assert not {task_key(record.task) for records in sets.values() for record in records} & report


def test_the_robot_kinds_the_new_robot_encoder_is_tuned_on_share_no_task_with_a_task_set():
    """The other kinds' steps and card examples (ember_train.new_robot_encoder) were written blind to every task set:
    none shares half its content words with a task of tests/data."""
    robots, steps = read_robot_kinds()
    written = _by_words([step["clause"] for step in steps] + [example for robot in robots for example in robot.examples])
    for path in sorted(DATA.glob("*tasks.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                task = json.loads(line)["task"]
                assert not _close(task, written), f"{path.name}, line {number}, is close to {_close(task, written)!r}"
