"""Selector: the one inference entry point, from a SelectionRequest to a ranked, explained Selection."""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from ember_core.availability import RANK_ORDER, FleetStatus
from ember_core.fleet import Fleet
from ember_core.hookspecs import TaskContext
from ember_core.errors import InvalidInputError
from ember_core.images import ImageInput
from ember_core.limits import MAX_TASK_ECHO, MAX_TOP_K
from ember_core.model.generation import greedy_continue
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import load_pretrained, resolve_device
from ember_core.processor import EmberProcessor, Features, select_mask
from ember_core.prompt import ACTION_PLAN, REASONING_END
from ember_core.reasoning import Plan, Reasoning, parse_plan, parse_reasoning
from ember_core.request import DEFAULT_TOP_K, SelectionRequest
from ember_core.robots_file import load_fleet
from ember_core.selection import Candidate, ImageInfo, Selection


@dataclass
class _Prepared:
    """One validated request, ready for the model."""

    request: SelectionRequest
    task: str
    features: Features
    image: ImageInfo | None
    preprocess_ms: float


class Selector:
    """Ranks the fleet's robots for a task (and optional image) and explains the choice.

    model: a (model, processor) pair, a directory written by `save_pretrained`, or None for the model
    shipped with Ember (or, if that is missing, a random-init model with a loud warning). The fleet
    comes from `fleet`, else `robots_file`, else the usual robots.yaml lookup; a checkpoint trained on
    another fleet is adapted to it by robot id. `scene_vetoes` hands the scene tags the model sees in
    the image to the fleet's feasibility rules; turn it off where those tags are not trusted.
    """

    def __init__(self, model: tuple[EmberVLM, EmberProcessor] | str | os.PathLike | None = None,
                 fleet: Fleet | None = None, robots_file: str | os.PathLike | None = None, device: str = "auto",
                 scene_vetoes: bool = True):
        self.device = resolve_device(device)  # a wrong device name fails before the model loads
        fleet = fleet or load_fleet(robots_file)
        self.model, self.processor = model if isinstance(model, tuple) else load_pretrained(model, fleet)
        if self.processor.fleet.ids != fleet.ids:
            raise ValueError(f"model head is laid out for {self.processor.fleet.ids}, the fleet is {fleet.ids}")
        self.fleet = fleet
        self.scene_vetoes = scene_vetoes
        self.model.to(self.device).eval()
        with torch.no_grad():  # embed the cards (hundreds of phrases) now, not in the first request's latency
            self.model.card_embeddings()

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def model_sha(self) -> str:
        return self.model.sha

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
        pixels = self.processor.pixels(request.image)
        info = request.image_info
        if info is None and pixels is not None:
            info = ImageInfo(stamp=None, frame_id="", age_ms=None)
        return _Prepared(request, task, self.processor.features(task, pixels), info,
                         (time.perf_counter() - start) * 1000)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def _forward(self, items: list[_Prepared], use_cache: bool = False) -> dict[str, Any]:
        batch = {key: value.to(self.device) for key, value in self.processor.collate([i.features for i in items]).items()}
        with self._autocast():
            return self.model(**batch, use_cache=use_cache)

    def _select_scored(self, items: list[_Prepared]) -> list[Selection]:
        """Selections without reasoning, the robot scores of all items in one padded forward pass."""
        start = time.perf_counter()
        outputs = self._forward(items)
        model_ms = (time.perf_counter() - start) * 1000 / len(items)
        probabilities, scenes = self._scores(items, outputs)
        return [self._selection(item, probs, scene, model_ms) for item, probs, scene in zip(items, probabilities, scenes)]

    @torch.no_grad()
    def _select_explained(self, item: _Prepared) -> Selection:
        """A selection with reasoning: the prompt runs through the model once, and its KV cache seeds the text."""
        start = time.perf_counter()
        outputs = self._forward([item], use_cache=True)
        model_ms = (time.perf_counter() - start) * 1000
        probabilities, scenes = self._scores([item], outputs)
        selection = self._selection(item, probabilities[0], scenes[0], model_ms)
        began = time.perf_counter()
        reasoning, plan = self._explain(outputs["past_key_values"], item, [c.robot_id for c in selection.candidates
                                                                           if c.selected])
        named = set(reasoning.decision)
        candidates = [replace(c, reasoning=reasoning.steps if c.robot_id in named else None)
                      for c in selection.candidates]
        latency = {**selection.latency_ms, "reasoning": (time.perf_counter() - began) * 1000}
        return replace(selection, candidates=candidates, reasoning=reasoning, plan=plan, latency_ms=latency)

    def _scores(self, items: list[_Prepared], outputs: dict[str, Any]) -> tuple[np.ndarray, list[frozenset[str]]]:
        """Calibrated per-robot probabilities (B, N), and the scene tags recognised in each item's image
        (empty without an image, a scene head, or with scene vetoes off)."""
        probabilities = self.processor.probabilities(outputs["robot_logits"]).numpy()
        scenes = [frozenset() for _ in items]
        if "scene_logits" in outputs and self.scene_vetoes:
            seen = (outputs["scene_logits"].float() > 0).cpu()  # probability above 0.5
            tags = self.model.config.scene_tags
            scenes = [frozenset(t for t, on in zip(tags, row) if on) if item.features.pixels is not None else frozenset()
                      for item, row in zip(items, seen.tolist())]
        return probabilities, scenes

    def _selection(self, item: _Prepared, probabilities: np.ndarray, scene: frozenset[str], model_ms: float) -> Selection:
        # The scene seen in the camera image lets the fleet's rules rule robots out (no drone under water).
        vetoes = self.fleet.infeasible(TaskContext(task=item.task, scene=scene))
        request = item.request
        return Selection(
            request_id=request.request_id, task=item.task, status="ok", errors=[], stamp=time.time(),
            image=replace(item.image, scene=tuple(sorted(scene))) if item.image else None,
            fleet_ids=self.fleet.ids, fleet_hash=self.fleet.hash, model_name=self.model_name, model_sha=self.model_sha,
            top_k=request.top_k, candidates=self._rank(probabilities, vetoes, request)[: request.top_k],
            reasoning=None, plan=None, task_id=request.task_id,
            latency_ms={"preprocess": item.preprocess_ms, "model": model_ms, "reasoning": 0.0},
        )

    def _rank(self, probabilities: np.ndarray, vetoes: dict[str, list[str]], request: SelectionRequest) -> list[Candidate]:
        """Free feasible robots by confidence, then busy, offline and vetoed ones; selected by `select_mask`."""
        status: FleetStatus = request.fleet_status
        ids = self.fleet.ids
        eligible = np.array([robot not in vetoes and status.selectable(robot) for robot in ids])
        selected = select_mask(probabilities[None], request.confidence_threshold, eligible[None])[0]
        order = sorted(range(len(ids)), key=lambda i: (ids[i] in vetoes, RANK_ORDER[status.of(ids[i])], -float(probabilities[i])))
        return [Candidate(rank=rank, robot_id=ids[i], robot_type=self.fleet.robots[i].name,
                          confidence=float(probabilities[i]), selected=bool(selected[i]),
                          infeasible=vetoes.get(ids[i], []), availability=status.of(ids[i]))
                for rank, i in enumerate(order, start=1)]

    def _explain(self, past: Any, item: _Prepared, selected: list[str]) -> tuple[Reasoning, Plan]:
        """Generate the 4 steps, then the plan, after the cached prompt; parse and check both against the fleet."""
        processor, config = self.processor, self.model.config
        tokenizer = processor.tokenizer
        attention = torch.ones(1, item.features.input_ids.numel(), dtype=torch.long, device=self.device)
        with self._autocast():
            steps, past, attention = greedy_continue(
                self.model.language_model, past, attention, processor.decision_ids(selected),
                config.max_reasoning_tokens, {processor.token_id(REASONING_END), tokenizer.eos_token_id},
            )
            plan_ids, _, _ = greedy_continue(
                self.model.language_model, past, attention,
                [processor.token_id(REASONING_END), processor.token_id(ACTION_PLAN)],
                config.max_plan_tokens, {tokenizer.eos_token_id},
            )
        reasoning = parse_reasoning(tokenizer.decode(steps, skip_special_tokens=True), self.fleet, selected)
        plan = parse_plan(tokenizer.decode(plan_ids, skip_special_tokens=True), self.fleet, allow_empty=True)
        return reasoning, plan
