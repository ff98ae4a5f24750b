"""Training records: loading the public dataset and the project's JSONL format, dedup, and task splits.

A record's label is the *set* of suitable robots (multi-label), stored in fleet order.

The public dataset (see /work/shared/data/robot-selection/README.md) comes as two files:
- `single_robot_selection.json` gives the label: `output` is an unordered, comma-separated set of
  robot display names.
- `multi_robot_selection_dataset.json` gives subtask plans, joined to the single file by `task_key`.
  Its robot choices disagree with the single file for most tasks, so a plan is kept only when every
  robot it assigns is in the task's suitable set; otherwise it would teach the model the opposite of
  the label. Execution orders are renumbered densely (1, 3 -> 1, 2, relative order kept) because
  most plans skip an order number and `ember_core.reasoning.parse_plan` flags gaps. `plan_stats`
  reports how many plans were kept and why the others were dropped.

The project's own JSONL format (see `load_jsonl`) gets the same dense renumbering; there a plan that
assigns a robot outside the record's `robots` is an error, since the file's author can fix it.

Records sharing a `task_key` are merged (union of robots, the first plan and image found), so one
task is one record, and `split_records` / `kfold` split by task so no task is in two splits.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ember_core.fleet import Fleet, UnknownRobotError
from ember_core.reasoning import Subtask, subtasks_from_records
from ember_core.text import normalise_task
from ember_train.public_data import DATA_ENV_VAR

SINGLE_FILE = "single_robot_selection.json"
MULTI_FILE = "multi_robot_selection_dataset.json"
JSONL_KEYS = ("task", "robots", "team", "plan", "image")
PLAN_KEYS = ("subtask", "assigned_robot", "execution_order")

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


class DataError(ValueError):
    """A training file or record that cannot be used; the message names the file and record."""


@dataclass(frozen=True)
class TaskRecord:
    """One task: its text, the ids of the suitable robots (fleet order), an optional plan and image, and for a
    job that needs several robots together, the team in the order they act (its members are `robots`)."""

    task: str
    robots: tuple[str, ...]
    plan: tuple[Subtask, ...] = ()
    image: str | None = None
    source: str = ""
    team: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.task.strip():
            raise DataError(f"{self.source or 'record'}: the task text is empty")
        if not self.robots:
            raise DataError(f"{self.source or 'record'}: no suitable robot; every task needs at least one")


def robot_targets(records: Sequence[TaskRecord], fleet: Fleet) -> np.ndarray:
    """(n, N) 0/1 matrix of each record's suitable robots, in fleet order."""
    targets = np.zeros((len(records), fleet.num_robots), dtype=np.float64)
    for i, record in enumerate(records):
        targets[i, [fleet.index(robot) for robot in record.robots]] = 1.0
    return targets



@dataclass(frozen=True)
class PlanStats:
    """What happened to the public multi file's plans when they were joined to the labelled tasks."""

    plans: int
    kept: int
    dropped_unsuitable: int
    dropped_duplicate: int
    dropped_unmatched: int
    renumbered: int
    tasks: int

    def summary(self) -> str:
        return (
            f"plans: {self.plans} in {MULTI_FILE}; kept {self.kept} ({self.renumbered} renumbered densely); "
            f"dropped {self.dropped_unsuitable} assigning a robot outside the task's suitable set, "
            f"{self.dropped_duplicate} for a task that already had a plan, "
            f"{self.dropped_unmatched} for a task missing from {SINGLE_FILE}; "
            f"{self.tasks - self.kept} of {self.tasks} tasks have no plan"
        )


@dataclass(frozen=True)
class Splits:
    """Disjoint train / validation / test records: no task_key is in two of them."""

    train: list[TaskRecord]
    val: list[TaskRecord]
    test: list[TaskRecord]


def task_key(text: str) -> str:
    """A task's identity: lower-case letters and digits only, so "building's" == "buildings"."""
    return _NOT_ALNUM.sub("", normalise_task(text).lower())


def load_public(directory: str | os.PathLike, fleet: Fleet) -> list[TaskRecord]:
    """The public dataset's distinct tasks, labelled by the single file, with plans kept by the rule above."""
    return _read_public(Path(directory), fleet)[0]


def plan_stats(directory: str | os.PathLike, fleet: Fleet) -> PlanStats:
    """How many of the public multi file's plans `load_public` keeps, and why it drops the rest."""
    return _read_public(Path(directory), fleet)[1]


def load_jsonl(path: str | os.PathLike, fleet: Fleet) -> list[TaskRecord]:
    """Records from one JSONL file of {"task", "robots" or "team", "plan"?, "image"?} objects, deduplicated."""
    return merge_records(_read_jsonl(Path(path), fleet), fleet)


def load_records(path: str | os.PathLike, fleet: Fleet) -> list[TaskRecord]:
    """Records from the public dataset's directory, a .jsonl file, or a directory of .jsonl files.

    A directory may hold both the two public files and .jsonl files; all of them are merged.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".jsonl":
        return load_jsonl(path, fleet)
    if path.is_dir():
        public = [(path / name).is_file() for name in (SINGLE_FILE, MULTI_FILE)]
        jsonl = sorted(path.glob("*.jsonl"))
        if any(public) and not all(public):
            missing = SINGLE_FILE if not public[0] else MULTI_FILE
            raise DataError(f"{path}: has one of the public dataset's files but not {missing}; add it or remove the other")
        records = _read_public(path, fleet)[0] if all(public) else []
        for file in jsonl:
            records += _read_jsonl(file, fleet)
        if all(public) or jsonl:
            return merge_records(records, fleet)
    raise DataError(
        f"{path}: expected a .jsonl file, a directory holding {SINGLE_FILE} and {MULTI_FILE}, "
        f"or a directory holding .jsonl files (the public data set is read from ${DATA_ENV_VAR} when set)"
    )


def merge_records(records: Iterable[TaskRecord], fleet: Fleet) -> list[TaskRecord]:
    """One record per task_key, in first-seen order: robots united, the first plan, image and team found kept."""
    merged: dict[str, TaskRecord] = {}
    for record in records:
        key = task_key(record.task)
        first = merged.get(key)
        if first is None:
            merged[key] = record
            continue
        merged[key] = TaskRecord(
            task=first.task,
            robots=_in_fleet_order(set(first.robots) | set(record.robots), fleet),
            plan=first.plan or record.plan,
            image=first.image if first.image is not None else record.image,
            source=first.source,
            team=first.team or record.team,
        )
    return list(merged.values())


def split_records(
    records: Sequence[TaskRecord], seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> Splits:
    """Train/val/test by task, from a seeded shuffle of the sorted task keys (input order does not matter)."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 and sum to less than 1"
        )
    groups = _shuffled_groups(records, seed)
    n_test, n_val = round(len(groups) * test_fraction), round(len(groups) * val_fraction)
    if groups and n_test + n_val >= len(groups):
        raise ValueError(f"{len(groups)} tasks leave no training task with these fractions; add tasks or lower them")
    test, val, train = groups[:n_test], groups[n_test:n_test + n_val], groups[n_test + n_val:]
    return Splits(train=_flat(train), val=_flat(val), test=_flat(test))


def kfold(records: Sequence[TaskRecord], k: int = 5, seed: int = 0) -> list[tuple[list[TaskRecord], list[TaskRecord]]]:
    """k (train, held-out) pairs by task; every record is held out exactly once."""
    groups = _shuffled_groups(records, seed)
    if not 2 <= k <= len(groups):
        raise ValueError(f"k={k} folds need 2 <= k <= the number of tasks ({len(groups)})")
    folds = [groups[i::k] for i in range(k)]
    return [(_flat(g for j, fold in enumerate(folds) if j != i for g in fold), _flat(folds[i])) for i in range(k)]


def _shuffled_groups(records: Sequence[TaskRecord], seed: int) -> list[list[TaskRecord]]:
    groups: dict[str, list[TaskRecord]] = {}
    for record in records:
        groups.setdefault(task_key(record.task), []).append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    return [groups[key] for key in keys]


def _flat(groups: Iterable[list[TaskRecord]]) -> list[TaskRecord]:
    return [record for group in groups for record in group]


def _in_fleet_order(robot_ids: Iterable[str], fleet: Fleet) -> tuple[str, ...]:
    return tuple(sorted(set(robot_ids), key=fleet.index))


def _robot_ids(names: Iterable[str], fleet: Fleet, where: str) -> tuple[str, ...]:
    ids = []
    for name in names:
        try:
            ids.append(fleet.robot(name).id)
        except UnknownRobotError as err:
            raise DataError(f"{where}: robot {name!r} is not in the fleet: {err}") from err
    return _in_fleet_order(ids, fleet)


def _dense_plan(entries: Sequence[Any], fleet: Fleet, where: str) -> tuple[tuple[Subtask, ...], bool]:
    """Subtasks with execution orders renumbered 1, 2, 3 ... in their relative order; and whether any moved."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DataError(f"{where}: 'plan' must be a list of objects with keys {', '.join(PLAN_KEYS)}")
    for position, entry in enumerate(entries, 1):
        unknown = sorted(set(entry) - set(PLAN_KEYS))
        if unknown:
            raise DataError(f"{where}: plan entry {position} has unknown keys {unknown}; allowed: {', '.join(PLAN_KEYS)}")
    orders = [entry.get("execution_order") for entry in entries]
    valid = [order for order in orders if isinstance(order, int) and not isinstance(order, bool) and order >= 1]
    rank = {order: i for i, order in enumerate(sorted(set(valid)), 1)} if len(valid) == len(orders) else {}
    renumbered = [dict(entry, execution_order=rank.get(entry.get("execution_order"), entry.get("execution_order")))
                  for entry in entries]
    try:
        plan = tuple(subtasks_from_records(renumbered, fleet))
    except ValueError as err:
        raise DataError(f"{where}: plan {err}") from err
    return plan, any(rank.get(order, order) != order for order in orders)


def _read_json_list(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found; point at the public dataset's directory") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _read_public(directory: Path, fleet: Fleet) -> tuple[list[TaskRecord], PlanStats]:
    labelled = []
    for i, item in enumerate(_read_json_list(directory / SINGLE_FILE)):
        where = f"{SINGLE_FILE}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("input"), str) or not isinstance(item.get("output"), str):
            raise DataError(f"{where}: expected an object with string 'input' and 'output'")
        names = [name.strip() for name in item["output"].split(",") if name.strip()]
        if not names:
            raise DataError(f"{where}: 'output' names no robot")
        labelled.append(TaskRecord(normalise_task(item["input"]), _robot_ids(names, fleet, where), source=where))
    tasks = {task_key(record.task): record for record in merge_records(labelled, fleet)}
    counts = dict(kept=0, dropped_unsuitable=0, dropped_duplicate=0, dropped_unmatched=0, renumbered=0)
    plans = _read_json_list(directory / MULTI_FILE)
    for i, item in enumerate(plans):
        where = f"{MULTI_FILE}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("input"), str):
            raise DataError(f"{where}: expected an object with a string 'input'")
        plan, moved = _dense_plan(item.get("subtasks"), fleet, where)
        record = tasks.get(task_key(item["input"]))
        if record is None:
            counts["dropped_unmatched"] += 1
        elif not {subtask.robot_id for subtask in plan} <= set(record.robots):
            counts["dropped_unsuitable"] += 1
        elif record.plan:
            counts["dropped_duplicate"] += 1
        elif plan:
            tasks[task_key(record.task)] = TaskRecord(record.task, record.robots, plan, record.image, record.source)
            counts["kept"] += 1
            counts["renumbered"] += moved
    return list(tasks.values()), PlanStats(plans=len(plans), tasks=len(tasks), **counts)


def _read_jsonl(path: Path, fleet: Fleet) -> list[TaskRecord]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        records.append(_jsonl_record(line, path, number, fleet))
    return records


def _jsonl_record(line: str, path: Path, number: int, fleet: Fleet) -> TaskRecord:
    where = f"{path}:{number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg}); write one JSON object per line") from err
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - set(JSONL_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown}; allowed: {', '.join(JSONL_KEYS)}")
    task = normalise_task(item["task"]) if isinstance(item.get("task"), str) else ""
    if not task:
        raise DataError(f"{where}: 'task' is missing or empty; give the task text")
    if ("robots" in item) == ("team" in item):
        raise DataError(f"{where}: give 'robots' (robots that could each do the task) or 'team' (robots needed "
                        f"together, in the order they act), not both or neither")
    key = "team" if "team" in item else "robots"
    names = item[key]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise DataError(f"{where}: '{key}' must be a non-empty list of robot names or ids, got {names!r}")
    robots = _robot_ids(names, fleet, where)
    team = tuple(fleet.robot(name).id for name in names) if key == "team" else ()
    if key == "team" and len(set(team)) < 2:
        raise DataError(f"{where}: a 'team' needs two robots or more, each once; got {names!r}")
    plan, _ = _dense_plan(item.get("plan", []), fleet, where)
    outside = sorted({s.robot_type for s in plan if s.robot_id not in robots})
    if outside:
        raise DataError(
            f"{where}: the plan assigns {', '.join(outside)}, not among the task's 'robots'; "
            f"add them to 'robots' or change the plan"
        )
    image = item.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise DataError(f"{where}: 'image' must be a path relative to {path.name}, got {image!r}")
        image_path = (path.parent / image).resolve()
        if not image_path.is_file():
            raise DataError(f"{where}: image file {image_path} does not exist")
        image = str(image_path)
    return TaskRecord(task, robots, plan, image, where, team)
