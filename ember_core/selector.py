"""Selector: the one inference entry point, from a SelectionRequest to a ranked, explained Selection."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ember_core.availability import RANK_ORDER, FleetStatus
from ember_core.backend import Outputs, load_backend
from ember_core.fleet import Fleet
from ember_core.hookspecs import TaskContext
from ember_core.errors import InvalidInputError
from ember_core.images import ImageInput
from ember_core.limits import MAX_TASK_ECHO, MAX_TOP_K
from ember_core.clauses import comma_pieces, task_parts
from ember_core.explanation import ExplanationContext, explanation_text
from ember_core.model.structured import ExplanationTooLong, StructuredDecoder
from ember_core.part_scorer import load_part_scorer, load_task_scorer, task_logits
from ember_core.processor import Features, select_mask
from ember_core.reasoning import Plan, Reasoning, Subtask, format_plan, parse_plan, parse_reasoning
from ember_core.request import DEFAULT_TOP_K, SelectionRequest
from ember_core.robots_file import load_fleet
from ember_core.selection import Candidate, ImageInfo, Selection
from ember_core.teams import TeamPlan, expand_pieces, part_probabilities, part_texts, plan_team, text_count


@dataclass
class _Prepared:
    """One validated request, ready for the model."""

    request: SelectionRequest
    task: str
    features: Features
    image: ImageInfo | None
    preprocess_ms: float
    part_features: list[Features]  # the part_texts of the parts, then of comma pieces (ember_core.teams), or empty
    part_texts: list[str]  # the texts of part_features
    parts: list[str]
    pieces: list[list[str]]  # each part's comma pieces ([part] for a part without)


class Selector:
    """Ranks the fleet's robots for a task (and optional image) and explains the choice.

    model: a torch (model, processor) pair, a directory written by `save_pretrained` or by `ember export
    onnx`, or None for the model shipped with Ember (or, if that is missing, a random-init model with a
    loud warning). `backend` is "torch" or "onnx" (onnxruntime, for an export; no torch is imported);
    None takes onnx for an export and torch otherwise (ember_core.backend). The fleet comes from
    `fleet`, else `robots_file`, else the usual robots.yaml lookup; a model trained on another fleet is
    adapted to it by robot id. `scene_vetoes` hands the scene tags the model sees in the image to the
    fleet's feasibility rules; turn it off where those tags are not trusted.
    """

    def __init__(self, model: Any = None, fleet: Fleet | None = None, robots_file: str | os.PathLike | None = None,
                 device: str = "auto", scene_vetoes: bool = True, backend: str | None = None):
        fleet = fleet or load_fleet(robots_file)
        self.backend = load_backend(model, fleet, backend, device)
        self.model, self.processor, self.device = self.backend.model, self.backend.processor, self.backend.device
        if self.processor.fleet.ids != fleet.ids:
            raise ValueError(f"model head is laid out for {self.processor.fleet.ids}, the fleet is {fleet.ids}")
        self.fleet = fleet
        self.scene_vetoes = scene_vetoes
        self.decoder = StructuredDecoder(self.processor.tokenizer, self.backend.config.max_reasoning_tokens)
        self.part_scorer = load_part_scorer(self.backend.config.text_encoder)
        self.task_scorer = load_task_scorer(self.backend.config.text_encoder)

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def model_sha(self) -> str:
        return self.backend.sha

    # ---- public API -------------------------------------------------------------------------

    def select(self, request: SelectionRequest) -> Selection:
        """The selection for one request; bad input gives status "invalid_input", never raises."""
        return self.select_batch([request])[0]

    def select_batch(self, requests: Sequence[SelectionRequest]) -> list[Selection]:
        """Selections for several requests; the robot scores of those without reasoning run in one batch.

        A request's `fleet_status` (the fleet manager's view of which robots are busy or offline)
        moves those robots below the free ones and keeps them from being selected.
        """
        results: list[Selection | None] = [None] * len(requests)
        prepared: list[tuple[int, _Prepared]] = []
        for i, request in enumerate(requests):
            try:
                prepared.append((i, self._prepare(request)))
            except InvalidInputError as err:
                results[i] = self.error(request, "invalid_input", str(err))
        batched = [(i, item) for i, item in prepared if not item.request.return_reasoning]
        if batched:
            for (i, item), selection in zip(batched, self._select_scored([item for _, item in batched])):
                results[i] = selection
        for i, item in prepared:
            if item.request.return_reasoning:
                results[i] = self._select_explained(item)
        return results  # type: ignore[return-value]

    def select_robots(self, image: ImageInput, task_description: str, top_k: int = DEFAULT_TOP_K,
                      return_reasoning: bool = True) -> list[dict[str, Any]]:
        """Candidates sorted by confidence: {robot_type, robot_id, confidence, reasoning, ...}.

        Raises InvalidInputError on bad input (empty or too long task, unreadable image).
        """
        request = SelectionRequest(task_description, image, top_k=top_k, return_reasoning=return_reasoning)
        item = self._prepare(request)
        selection = self._select_explained(item) if return_reasoning else self._select_scored([item])[0]
        document = selection.to_document()
        reasoning = document["reasoning"] or {}
        return [
            {**candidate, "reasoning_valid": reasoning.get("reasoning_valid"),
             "reasoning_problems": reasoning.get("problems", [])}
            for candidate in document["candidates"]
        ]

    def error(self, request: SelectionRequest, status: str, message: str) -> Selection:
        """A non-ok result (no_image, rejected_busy, invalid_input, ...) naming this selector's fleet and model.

        The task is echoed as printable UTF-8 and cut at MAX_TASK_ECHO characters: it may be anything.
        """
        task = request.task if isinstance(request.task, str) else repr(request.task)
        task = task[:MAX_TASK_ECHO].encode("utf-8", "backslashreplace").decode("utf-8")
        return Selection.error(request.request_id, task, status, [message], self.fleet, self.model_name,
                               self.model_sha, request.image_info, request.task_id)

    # ---- steps -----------------------------------------------------------------------------

    def _prepare(self, request: SelectionRequest) -> _Prepared:
        start = time.perf_counter()
        task = self.processor.clean_task(request.task)
        top_k, threshold = request.top_k, request.confidence_threshold
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"confidence_threshold must be a number in [0, 1], got {threshold!r}")
        pixels = self.processor.pixels(request.image, return_tensors="np")
        info = request.image_info
        if info is None and pixels is not None:
            info = ImageInfo(stamp=None, frame_id="", age_ms=None)
        features = self.processor.features(task, pixels, return_tensors="np")
        parts = task_parts(task)
        pieces = [comma_pieces(part) for part in parts]
        return _Prepared(request, task, features, info, (time.perf_counter() - start) * 1000,
                         *self._part_features(parts, pieces), parts, pieces)

    def _part_features(self, parts: list[str], pieces: list[list[str]]) -> tuple[list[Features], list[str]]:
        """The features of the parts' `part_texts`, then of the `part_texts` of the pieces of each part told as a
        comma list, and those texts (none for a task of one part without pieces); a text in context that is
        longer than the model reads is scored alone."""
        groups = [group for group in pieces if len(group) > 1]
        if len(parts) < 2 and not groups:
            return [], []
        features, texts = [], []
        scored = part_texts(parts) + [text for group in groups for text in part_texts(group)]
        alone = parts + parts[1:] + [piece for group in groups for piece in group + group[1:]]
        for text, part in zip(scored, alone):
            try:
                features.append(self.processor.features(text, return_tensors="np"))
            except InvalidInputError:
                features.append(self.processor.features(part, return_tensors="np"))
                text = part
            texts.append(text)
        return features, texts

    def _forward(self, features: list[Features], use_cache: bool = False) -> Outputs:
        return self.backend.forward(self.processor.collate(features, return_tensors="np"), use_cache)

    def _select_scored(self, items: list[_Prepared]) -> list[Selection]:
        """Selections without reasoning, the robot scores of all items (and of their parts) in one padded forward pass."""
        start = time.perf_counter()
        parts = [features for item in items for features in item.part_features]
        outputs = self._forward([item.features for item in items] + parts)
        model_ms = (time.perf_counter() - start) * 1000 / len(items)
        probabilities, scenes = self._scores(items, outputs)
        embedding = None if outputs.task_embedding is None else outputs.task_embedding[len(items):]
        texts = [text for item in items for text in item.part_texts]
        scored = self._part_scores(outputs.robot_logits[len(items):], embedding, texts)
        selections, offset = [], 0
        for item, probs, scene in zip(items, probabilities, scenes):
            count = len(item.part_features)
            selection = self._selection(item, probs, scene, model_ms, scored[offset:offset + count])
            selections.append(selection)
            offset += count
        return selections

    def _select_explained(self, item: _Prepared) -> Selection:
        """A selection with reasoning: the prompt runs through the model once, and its KV cache seeds the text."""
        start = time.perf_counter()
        outputs = self._forward([item.features], use_cache=True)
        scored = np.zeros((0, len(self.fleet)))
        if item.part_features:
            part_outputs = self._forward(item.part_features)
            scored = self._part_scores(part_outputs.robot_logits, part_outputs.task_embedding, item.part_texts)
        model_ms = (time.perf_counter() - start) * 1000
        probabilities, scenes = self._scores([item], outputs)
        selection = self._selection(item, probabilities[0], scenes[0], model_ms, scored)
        began = time.perf_counter()
        task_embedding = None if outputs.task_embedding is None else outputs.task_embedding[0]
        reasoning = self._explain(outputs.cache, item, selection, scenes[0], task_embedding)
        named = set(reasoning.decision)
        candidates = [replace(c, reasoning=reasoning.steps if c.robot_id in named else None)
                      for c in selection.candidates]
        latency = {**selection.latency_ms, "reasoning": (time.perf_counter() - began) * 1000}
        return replace(selection, candidates=candidates, reasoning=reasoning, latency_ms=latency)

    def _part_scores(self, robot_logits: np.ndarray, embedding: np.ndarray | None, texts: list[str]) -> np.ndarray:
        """The probabilities of part texts for the team rule: calibrated, with the part scorer's mixed in
        (ember_core.part_scorer) when the model's sentence encoder is the one it reads."""
        probabilities = self.processor.probabilities(robot_logits)
        if self.part_scorer is None or embedding is None or not len(probabilities):
            return probabilities
        return self.part_scorer.mix(probabilities, embedding, texts, self.fleet.ids)

    def _scores(self, items: list[_Prepared], outputs: Outputs) -> tuple[np.ndarray, list[frozenset[str] | None]]:
        """Calibrated per-robot probabilities (B, N) of the items (the first B rows of the outputs), and
        the scene tags the scene head recognises in each item's image (None without an image; empty
        without a scene head)."""
        count = len(items)
        logits = task_logits(self.task_scorer, outputs.robot_logits[:count],
                             None if outputs.task_embedding is None else outputs.task_embedding[:count],
                             None if outputs.familiarity is None else outputs.familiarity[:count],
                             [item.task for item in items], self.fleet.ids)
        probabilities = self.processor.probabilities(logits)
        scenes = [None if item.features.pixels is None else frozenset() for item in items]
        if outputs.scene_logits is not None:
            seen = outputs.scene_logits[: len(items)] > 0  # probability above 0.5
            tags = self.backend.config.scene_tags
            scenes = [frozenset(t for t, on in zip(tags, row) if on) if item.features.pixels is not None else None
                      for item, row in zip(items, seen.tolist())]
        return probabilities, scenes

    def _selection(self, item: _Prepared, probabilities: np.ndarray, seen: frozenset[str] | None, model_ms: float,
                   scored_parts: np.ndarray) -> Selection:
        """The selection document of a task from its probabilities and those of its `part_texts` (`scored_parts`)."""
        # The scene seen in the camera image lets the fleet's rules rule robots out (no drone under water).
        scene = seen if seen is not None and self.scene_vetoes else frozenset()
        vetoes = self.fleet.infeasible(TaskContext(task=item.task, scene=scene))
        request = item.request
        ranked, eligible = self._rank(probabilities, vetoes, request)
        team = TeamPlan()
        if item.part_features:
            count = text_count(len(item.parts))
            parts, part_rows = expand_pieces(item.parts, part_probabilities(scored_parts[:count], len(item.parts)),
                                             item.pieces, scored_parts[count:])
            team = plan_team(parts, part_rows, eligible, self.fleet.ids)
        if team.team:  # the robots to dispatch are the team's; the confidences still say who could do it alone
            ranked = [replace(c, selected=c.robot_id in team.team) for c in ranked]
        return Selection(
            request_id=request.request_id, task=item.task, status="ok", errors=[], stamp=time.time(),
            image=replace(item.image, scene=tuple(sorted(scene))) if item.image else None,
            fleet_ids=self.fleet.ids, fleet_hash=self.fleet.hash, model_name=self.model_name, model_sha=self.model_sha,
            top_k=request.top_k, candidates=ranked[: request.top_k], team=list(team.team), reasoning=None,
            plan=self._plan(team), task_id=request.task_id,
            latency_ms={"preprocess": item.preprocess_ms, "model": model_ms, "reasoning": 0.0},
        )

    def _plan(self, team: TeamPlan) -> Plan:
        """The team's subtasks as plan text, parsed and checked like any plan; an empty, valid plan without a team."""
        subtasks = [Subtask(order, order, description, robot_id, self.fleet.robot(robot_id).name)
                    for order, (description, robot_id) in enumerate(team.steps, start=1)]
        return parse_plan(format_plan(subtasks, self.fleet), self.fleet, allow_empty=True, team=team.team)

    def _rank(self, probabilities: np.ndarray, vetoes: dict[str, list[str]],
              request: SelectionRequest) -> tuple[list[Candidate], np.ndarray]:
        """Free feasible robots by confidence, then busy, offline and vetoed ones; selected by `select_mask`.
        Also the (N,) mask of robots that may be selected at all."""
        status: FleetStatus = request.fleet_status
        ids = self.fleet.ids
        eligible = np.array([robot not in vetoes and status.selectable(robot) for robot in ids])
        selected = select_mask(probabilities[None], request.confidence_threshold, eligible[None])[0]
        order = sorted(range(len(ids)), key=lambda i: (ids[i] in vetoes, RANK_ORDER[status.of(ids[i])], -float(probabilities[i])))
        ranked = [Candidate(rank=rank, robot_id=ids[i], robot_type=self.fleet.robots[i].name,
                            confidence=float(probabilities[i]), selected=bool(selected[i]),
                            infeasible=vetoes.get(ids[i], []), availability=status.of(ids[i]))
                  for rank, i in enumerate(order, start=1)]
        return ranked, eligible

    def _explain(self, cache: Any, item: _Prepared, selection: Selection, seen: frozenset[str] | None,
                 task_embedding: np.ndarray | None) -> Reasoning:
        """The 4 steps after the cached prompt (see ember_core.explanation), parsed and checked against the selection."""
        selected = list(selection.team) or [c.robot_id for c in selection.candidates if c.selected]  # team: plan order
        free = [c.robot_id for c in selection.candidates
                if not c.selected and not c.infeasible and item.request.fleet_status.selectable(c.robot_id)]
        context = ExplanationContext(task=item.task, fleet=self.fleet, selected=tuple(selected),
                                     team=tuple(selection.team), scene=None if seen is None else tuple(sorted(seen)),
                                     runner_up=free[0] if free else None)
        room = self.backend.config.lm_context - len(item.features.input_ids)
        try:
            decoded = self.decoder.decode(context, self.processor.decision_ids(selected),
                                          lambda ids: self.backend.feed(ids, cache), self.backend.token_scores, room,
                                          self.backend.relevance.for_task(task_embedding))
        except ExplanationTooLong as err:
            return Reasoning(text="", steps=[], decision=[], valid=False, problems=[str(err)])
        return parse_reasoning(explanation_text(decoded.pieces), self.fleet, selected)
