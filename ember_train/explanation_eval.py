"""Measuring explanations: the Selector's reasoning, team and plan on labelled tasks, counted from the documents.

Every figure is read from the selection documents as a consumer gets them, with the same parsers:

- reasoning_validity: the share of tasks whose reasoning parses as four sound steps (`reasoning_valid`);
- step4_faithfulness: the share whose Step 4 names exactly the robots the selection selected;
- step3_fact_precision: of all the capabilities and limitations Step 3 attributes to robots, the share
  on that robot's card (`ember_core.reasoning.step3_facts`);
- step1_task_reference: the share whose Step 1 holds the task's action verb (its first verb of
  `ember_core.clauses`, when it has one) and a content word of the task after it (its object);
- on tasks labelled with a team: team_jaccard (mean Jaccard of the document's team and the labelled
  one, 0 for no team), team_order (the share with the team in the labelled order), plan_validity
  (of the documents with a team, the share whose plan is valid) and plan_coverage (the share of
  labelled members with a subtask);
- on tasks without one: false_team_rate, the share given a team;
- reasoning_ms_p50/p95: the time to write the reasoning (after the selection), per task.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from ember_core.clauses import is_action_verb
from ember_core.fleet import Fleet
from ember_core.reasoning import MATCHING_STEP, step3_facts
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.data import TaskRecord

EXPLANATION_KEYS = ("reasoning_validity", "step4_faithfulness", "step3_fact_precision", "step1_task_reference",
                    "team_jaccard", "team_order", "false_team_rate", "plan_validity", "plan_coverage",
                    "reasoning_ms_p50", "reasoning_ms_p95")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_FUNCTION_WORDS = frozenset(("the", "a", "an", "of", "to", "in", "on", "at", "for", "and", "or", "with", "from",
                             "into", "onto", "by", "its", "it", "their", "them", "this", "that", "all", "any"))


def explain_records(selector: Selector, records: Sequence[TaskRecord], use_images: bool) -> list[dict[str, Any]]:
    """The selection document, with reasoning, of each record (its image, a rendered scene, or none)."""
    size = selector.processor.config.image_size
    documents = []
    for record in records:
        image = (record.image or render_scene(record.task, size)) if use_images else None
        documents.append(selector.select(SelectionRequest(record.task, image, return_reasoning=True)).to_document())
    return documents


def explanation_metrics(documents: Sequence[dict[str, Any]], records: Sequence[TaskRecord],
                        fleet: Fleet) -> dict[str, float]:
    """The figures of the module docstring for documents and the records they answer (keys absent when no task
    counts towards them, e.g. team figures on data without teams)."""
    valid, faithful, referred, on_card, facts = [], [], [], 0, 0
    jaccard, ordered, false_team, plan_valid, coverage, latency = [], [], [], [], [], []
    for document, record in zip(documents, records):
        reasoning = document["reasoning"]
        valid.append(reasoning["reasoning_valid"])
        selected = document["team"] or [c["robot_id"] for c in document["candidates"] if c["selected"]]
        faithful.append(sorted(reasoning["decision"]) == sorted(selected))
        matching = next((step for step in reasoning["steps"] if step.startswith(f"Step {MATCHING_STEP}:")), "")
        found = step3_facts(matching.split(":", 2)[-1], fleet)
        on_card += sum(fact.on_card for fact in found)
        facts += len(found)
        first = next((step for step in reasoning["steps"] if step.startswith("Step 1:")), "")
        referred.append(_refers_to_task(first, record.task))
        latency.append(document["latency_ms"]["reasoning"])
        team = document["team"]
        if record.team:
            gold = set(record.team)
            jaccard.append(len(gold & set(team)) / len(gold | set(team)))
            ordered.append(list(team) == list(record.team))
            coverage.append(np.mean([robot in {s["robot_id"] for s in document["plan"]["subtasks"]} for robot in gold]))
        else:
            false_team.append(bool(team))
        if team:
            plan_valid.append(document["plan"]["plan_valid"])
    metrics = {"reasoning_validity": np.mean(valid), "step4_faithfulness": np.mean(faithful),
               "step1_task_reference": np.mean(referred), "reasoning_ms_p50": np.percentile(latency, 50),
               "reasoning_ms_p95": np.percentile(latency, 95)}
    if facts:
        metrics["step3_fact_precision"] = on_card / facts
    for key, values in (("team_jaccard", jaccard), ("team_order", ordered), ("false_team_rate", false_team),
                        ("plan_validity", plan_valid), ("plan_coverage", coverage)):
        if values:
            metrics[key] = float(np.mean(values))
    return {key: float(value) for key, value in metrics.items()}


def _refers_to_task(step: str, task: str) -> bool:
    """Step 1 holds the task's first action verb (if it has one) and a content word of the task after it."""
    words = _WORD.findall(task.lower())
    said = set(_WORD.findall(step.lower()))
    start = next((i for i, word in enumerate(words) if is_action_verb(word)), None)
    if start is not None and words[start] not in said:
        return False
    rest = words if start is None else words[start + 1:]
    return any(word in said for word in rest if word not in _FUNCTION_WORDS and len(word) > 2)


def format_explanation_metrics(metrics: dict[str, float], title: str) -> str:
    lines = [title]
    for key in EXPLANATION_KEYS:
        if key in metrics:
            value = metrics[key]
            lines.append(f"  {key:<24} {value:8.1f}" if key.endswith(("p50", "p95")) else f"  {key:<24} {value:8.4f}")
    return "\n".join(lines)
