"""Tests for loading training records (public files and JSONL), dedup, task splits and augmentation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ember_train.public_data import PUBLIC_DATA
from ember_core import Fleet
from ember_core.scenes import scene_tags
from ember_core.text import normalise_task
from ember_train.augment import augment
from ember_train.data import (
    MULTI_FILE,
    SINGLE_FILE,
    DataError,
    TaskRecord,
    kfold,
    load_jsonl,
    load_public,
    load_records,
    plan_stats,
    split_records,
    task_key,
)

needs_public = pytest.mark.skipif(not PUBLIC_DATA.is_dir(), reason=f"public dataset not found at {PUBLIC_DATA}")


@pytest.fixture(scope="module")
def public(fleet: Fleet) -> list[TaskRecord]:
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    return load_public(PUBLIC_DATA, fleet)


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are dicts (written as JSON) or raw strings (written as they are)."""
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def write_public(directory: Path, single: list, multi: list) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / SINGLE_FILE).write_text(json.dumps(single), encoding="utf-8")
    (directory / MULTI_FILE).write_text(json.dumps(multi), encoding="utf-8")
    return directory


def step(subtask: str, robot: str, order: int) -> dict:
    return {"subtask": subtask, "assigned_robot": robot, "execution_order": order}


def test_task_text_is_normalised_and_keyed():
    assert normalise_task("  Task:  Inspect a  building\u2019s \u201croof\u201d ") == "Inspect a building's \"roof\""
    assert task_key("Task: Inspect a high-rise building\u2019s exterior.") == task_key("inspect a HIGH RISE buildings exterior")


def test_jsonl_records_names_ids_plan_image_and_dedup(tmp_path: Path, fleet: Fleet):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "reef.png").write_bytes(b"not checked here")
    path = write_jsonl(tmp_path / "tasks.jsonl", [
        "# comment line",
        {"task": "Task: Inspect  the reef.", "robots": ["Underwater Robot"], "image": "img/reef.png"},
        "",
        {"task": "Carry boxes up the stairs", "robots": ["robot_with_legs", "humanoid"],
         "plan": [step("Carry boxes", "Humanoid", 1), step("Check the stairs", "Robot with Legs", 3)]},
        {"task": "carry boxes up the STAIRS.", "robots": ["Robot with Wheels"]},
    ])
    reef, stairs = load_jsonl(path, fleet)
    assert reef == TaskRecord("Inspect the reef.", ("underwater_robot",), (), str((tmp_path / "img" / "reef.png").resolve()),
                              f"{path}:2")
    assert stairs.robots == ("humanoid", "robot_with_wheels", "robot_with_legs")  # merged, fleet order
    assert [(s.order, s.robot_id) for s in stairs.plan] == [(1, "humanoid"), (2, "robot_with_legs")]
    assert stairs.source == f"{path}:4"


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ({"robots": ["Drone"]}, "'task' is missing"),
    ({"task": "Fly", "robots": []}, "'robots' must be a non-empty list"),
    ({"task": "Fly", "robots": ["Jetpack"]}, "'Jetpack' is not in the fleet"),
    ({"task": "Fly", "robots": ["Drone"], "image": "missing.png"}, "does not exist"),
    ({"task": "Fly", "robots": ["Drone"], "label": "Drone"}, "unknown keys ['label']"),
    ({"task": "Fly", "robots": ["Drone"], "plan": [step("Dive", "Underwater Robot", 1)]}, "not among the task's 'robots'"),
    ({"task": "Fly", "robots": ["Drone"], "plan": [step("Fly", "Drone", 0)]}, "execution_order"),
])
def test_jsonl_errors_name_file_and_line(tmp_path: Path, fleet: Fleet, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", ["# header", {"task": "Fly over a field", "robots": ["Drone"]}, line])
    with pytest.raises(DataError, match="bad.jsonl:3") as err:
        load_jsonl(path, fleet)
    assert message in str(err.value)


def test_public_format_unknown_robot_names_file_index_and_name(tmp_path: Path, fleet: Fleet):
    directory = write_public(tmp_path / "pub", [
        {"input": "Task: Fly over a field.", "output": "Drone"},
        {"input": "Task: Dig a hole.", "output": "Drone, Excavator"},
    ], [])
    with pytest.raises(DataError, match=rf"{SINGLE_FILE}\[1\].*'Excavator'"):
        load_public(directory, fleet)


def test_public_format_keeps_only_plans_within_the_label_and_renumbers(tmp_path: Path, fleet: Fleet):
    directory = write_public(tmp_path / "pub", [
        {"input": "Task: Fly over a field.", "output": "Drone"},
        {"input": "Task: Climb the stairs.", "output": "Robot with Legs, Humanoid"},
        {"input": "Task: Climb the  stairs", "output": "Drone"},
    ], [
        {"input": "Task: Fly over a field.", "subtasks": [step("Fly", "Drone", 1), step("Help", "Humanoid", 2)]},
        {"input": "Task: Climb the stairs.", "subtasks": [step("Climb", "Robot with Legs", 2), step("Film", "Drone", 4)]},
        {"input": "Task: Climb the stairs.", "subtasks": [step("Climb", "Humanoid", 1)]},
        {"input": "Task: Swim.", "subtasks": [step("Swim", "Underwater Robot", 1)]},
    ])
    field, stairs = load_public(directory, fleet)
    assert field.plan == ()
    assert stairs.robots == ("drone", "humanoid", "robot_with_legs")
    assert [(s.order, s.robot_id) for s in stairs.plan] == [(1, "robot_with_legs"), (2, "drone")]
    stats = plan_stats(directory, fleet)
    assert (stats.plans, stats.kept, stats.renumbered) == (4, 1, 1)
    assert (stats.dropped_unsuitable, stats.dropped_duplicate, stats.dropped_unmatched) == (1, 1, 1)


def test_load_records_dispatches_on_what_the_path_is(tmp_path: Path, fleet: Fleet):
    write_jsonl(tmp_path / "a.jsonl", [{"task": "Fly over a field", "robots": ["Drone"]}])
    write_jsonl(tmp_path / "b.jsonl", [{"task": "Fly over a field.", "robots": ["Humanoid"]},
                                       {"task": "Swim", "robots": ["Underwater Robot"]}])
    assert len(load_records(tmp_path / "a.jsonl", fleet)) == 1
    merged = load_records(tmp_path, fleet)
    assert [(r.task, r.robots) for r in merged] == [("Fly over a field", ("drone", "humanoid")),
                                                    ("Swim", ("underwater_robot",))]
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    for path in (tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "missing.jsonl"):
        with pytest.raises(DataError, match="expected a .jsonl file"):
            load_records(path, fleet)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / SINGLE_FILE).write_text("[]")
    with pytest.raises(DataError, match=MULTI_FILE):
        load_records(tmp_path / "half", fleet)


@needs_public
def test_public_files_give_244_tasks_with_robots(public: list[TaskRecord], fleet: Fleet):
    assert len(public) == 244
    assert len({task_key(r.task) for r in public}) == 244
    assert all(r.robots and list(r.robots) == sorted(r.robots, key=fleet.index) for r in public)
    assert sum(len(r.robots) > 1 for r in public) == 98
    assert load_records(PUBLIC_DATA, fleet) == public
    merged = [r for r in public if task_key(r.task) == task_key("Inspect a high-rise buildings exterior for damage.")]
    assert len(merged) == 1 and merged[0].source == f"{SINGLE_FILE}[0]"


@needs_public
def test_public_plans_assign_only_suitable_robots_with_dense_orders(public: list[TaskRecord], fleet: Fleet):
    with_plan = [r for r in public if r.plan]
    assert with_plan
    for record in with_plan:
        assert {s.robot_id for s in record.plan} <= set(record.robots), record.source
        orders = sorted({s.order for s in record.plan})
        assert orders == list(range(1, len(orders) + 1)), record.source
    stats = plan_stats(PUBLIC_DATA, fleet)
    assert stats.kept == len(with_plan) and stats.tasks == 244
    assert stats.kept + stats.dropped_unsuitable + stats.dropped_duplicate + stats.dropped_unmatched == stats.plans == 250


def test_splits_are_disjoint_deterministic_and_complete(fleet: Fleet):
    records = [TaskRecord(f"Task number {i}", ("drone",), source=str(i)) for i in range(50)]
    splits = split_records(records, seed=3)
    keys = [{task_key(r.task) for r in part} for part in (splits.train, splits.val, splits.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sorted(r.source for r in splits.train + splits.val + splits.test) == sorted(r.source for r in records)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 5, 5)
    assert split_records(records[::-1], seed=3) == splits
    assert split_records(records, seed=4) != splits
    with pytest.raises(ValueError, match="sum to less than 1"):
        split_records(records, val_fraction=0.5, test_fraction=0.5)


def test_kfold_holds_every_record_out_once():
    records = [TaskRecord(f"Task number {i}", ("drone",), source=str(i)) for i in range(23)]
    folds = kfold(records, k=5, seed=1)
    held = [r.source for _, out in folds for r in out]
    assert sorted(held) == sorted(r.source for r in records)
    for train, out in folds:
        assert not {r.source for r in train} & {r.source for r in out}
        assert len(train) + len(out) == len(records)
    assert kfold(records[::-1], k=5, seed=1) == folds
    with pytest.raises(ValueError, match="2 <= k"):
        kfold(records, k=1)


@needs_public
def test_augmenting_train_triples_it_and_leaves_val_and_test_alone(public: list[TaskRecord]):
    splits = split_records(public, seed=0)
    val, test = list(splits.val), list(splits.test)
    train = augment(splits.train)
    assert len(train) == 3 * len(splits.train)
    assert augment(splits.train) == train
    assert splits.val == val and splits.test == test
    assert all(a is b for a, b in zip(splits.val, val))
    for i, original in enumerate(splits.train):
        group = train[3 * i:3 * i + 3]
        assert group[0] is original
        assert len({task_key(r.task) for r in group}) == 3
        for variant in group[1:]:
            assert (variant.robots, variant.plan, variant.image) == (original.robots, original.plan, original.image)
            assert scene_tags(variant.task) == scene_tags(original.task), variant.task
    assert augment(splits.train, seed=1) != train
    assert augment(splits.train, factor=1) == splits.train
    with pytest.raises(ValueError, match="factor"):
        augment(splits.train, factor=0)
