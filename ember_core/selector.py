"""Selector: the one inference entry point, from (image, task) to a ranked, explained selection document."""
from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ember_core.availability import RANK_ORDER, FleetStatus
from ember_core.fleet import Fleet
from ember_core.hookspecs import TaskContext
from ember_core.images import ImageInput, InvalidInputError, to_pixels, to_rgb
from ember_core.model.checkpoint import DEFAULT_MODEL_DIR, EmberModel
from ember_core.model.config import CONFIG_FILE, preset
from ember_core.model.generation import greedy_continue
from ember_core.model.prompt import ACTION_PLAN, REASONING_END, REASONING_START, decision_text, selection_prompt
from ember_core.reasoning import Plan, Reasoning, parse_plan, parse_reasoning
from ember_core.robots_file import load_fleet
from ember_core.selection import Candidate, ImageInfo, Selection, validate_document

log = logging.getLogger("ember.selector")
RANDOM_INIT_WARNING = (
    "No model given and no default model installed: using a RANDOMLY INITIALISED {preset} model. Its "
    "rankings and reasoning are meaningless; pass --model DIR (a directory written by save_pretrained)."
)


@dataclass
class _Prepared:
    """One validated request, ready for the model."""

    request_id: str
    task: str
    task_id: str | None
    input_ids: torch.Tensor  # (L,)
    pixels: torch.Tensor | None  # (3, S, S)
    image: ImageInfo | None
    preprocess_ms: float


class Selector:
    """Ranks the fleet's robots for a task (and optional image) and explains the choice.

    model: an EmberModel, a directory written by `save_pretrained`, or None for the model shipped
    with Ember (or, if that is missing, a random-init model with a loud warning). The fleet comes
    from `fleet`, else `robots_file`, else the usual robots.yaml lookup; a checkpoint trained on
    another fleet is adapted to it by robot id. `scene_vetoes` hands the scene tags the model sees in
    the image to the plugins' feasibility hooks; turn it off where those tags are not trusted.
    """

    def __init__(self, model: EmberModel | str | os.PathLike | None = None, fleet: Fleet | None = None,
                 robots_file: str | os.PathLike | None = None, device: str = "auto",
                 confidence_threshold: float = 0.5, backend: str = "torch", scene_vetoes: bool = True):
        if backend != "torch":
            raise ValueError(f"backend {backend!r} is not available; use 'torch'")
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        fleet = fleet or load_fleet(robots_file)
        if model is None and (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file():
            model = DEFAULT_MODEL_DIR
        if model is None:
            log.warning(RANDOM_INIT_WARNING.format(preset="embervlm-37m"))
            model = EmberModel.build(preset("embervlm-37m"), fleet)
        elif not isinstance(model, EmberModel):
            model = EmberModel.from_pretrained(Path(model), fleet=fleet)
        if model.fleet.ids != fleet.ids:
            raise ValueError(f"model head is laid out for {model.fleet.ids}, the fleet is {fleet.ids}")
        self.bundle = model
        self.fleet = fleet
        self.confidence_threshold = confidence_threshold
        self.scene_vetoes = scene_vetoes
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.bundle.model.to(self.device).eval()
        with torch.no_grad():  # embed the cards (hundreds of phrases) now, not in the first request's latency
            self.bundle.model.card_embeddings()
        self._max_task_chars = self.bundle.model.config.max_task_chars

    # ---- public API -------------------------------------------------------------------------

    def select(self, task: str, image: ImageInput = None, top_k: int = 5, return_reasoning: bool = True,
               request_id: str | None = None, image_info: ImageInfo | None = None,
               fleet_status: FleetStatus | None = None, task_id: str | None = None) -> dict[str, Any]:
        """The selection document for one request; bad input gives status "invalid_input", never raises."""
        return self.select_batch([task], [image], top_k, return_reasoning, [request_id], [image_info],
                                 fleet_status, [task_id])[0]

    def select_batch(self, tasks: Sequence[str], images: Sequence[ImageInput] | None = None, top_k: int = 5,
                     return_reasoning: bool = True, request_ids: Sequence[str | None] | None = None,
                     image_infos: Sequence[ImageInfo | None] | None = None, fleet_status: FleetStatus | None = None,
                     task_ids: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """Documents for several requests; the robot scores of all valid requests run in one batch.

        `fleet_status` (the fleet manager's view of which robots are busy or offline) moves those
        robots below the free ones and keeps them from being selected; each candidate records it.
        """
        count = len(tasks)
        images = list(images) if images is not None else [None] * count
        request_ids = list(request_ids) if request_ids is not None else [None] * count
        image_infos = list(image_infos) if image_infos is not None else [None] * count
        task_ids = list(task_ids) if task_ids is not None else [None] * count
        if not len(images) == len(request_ids) == len(image_infos) == len(task_ids) == count:
            raise ValueError("tasks, images, request_ids, image_infos and task_ids must have the same length")
        documents: list[dict[str, Any] | None] = [None] * count
        prepared: list[tuple[int, _Prepared]] = []
        for i in range(count):
            rid = request_ids[i] or uuid.uuid4().hex
            try:
                prepared.append((i, self._prepare(rid, tasks[i], task_ids[i], images[i], image_infos[i], top_k)))
            except InvalidInputError as err:
                documents[i] = self.error_document(rid, tasks[i], "invalid_input", str(err), image_infos[i], task_ids[i])
        if prepared:
            items = [p for _, p in prepared]
            for (i, _), document in zip(prepared, self._run(items, top_k, return_reasoning, fleet_status or FleetStatus())):
                documents[i] = document
        return documents  # type: ignore[return-value]

    def select_robots(self, image: ImageInput, task_description: str, top_k: int = 5,
                      return_reasoning: bool = True) -> list[dict[str, Any]]:
        """Candidates sorted by confidence: {robot_type, robot_id, confidence, reasoning, ...}.

        Raises InvalidInputError on bad input (empty or too long task, unreadable image).
        """
        item = self._prepare(uuid.uuid4().hex, task_description, None, image, None, top_k)
        document = self._run([item], top_k, return_reasoning, FleetStatus())[0]
        reasoning = document["reasoning"] or {}
        return [
            {**candidate, "reasoning_valid": reasoning.get("reasoning_valid"),
             "reasoning_problems": reasoning.get("problems", [])}
            for candidate in document["candidates"]
        ]

    # ---- steps -----------------------------------------------------------------------------

    def _prepare(self, request_id: str, task: Any, task_id: str | None, image: ImageInput,
                 image_info: ImageInfo | None, top_k: int) -> _Prepared:
        start = time.perf_counter()
        if not isinstance(task, str) or not task.strip():
            raise InvalidInputError("task is empty; describe what the robots should do")
        task = " ".join(task.split())
        if len(task) > self._max_task_chars:
            raise InvalidInputError(f"task is {len(task)} characters; the limit is {self._max_task_chars}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidInputError(f"top_k must be a positive integer, got {top_k!r}")
        rgb = to_rgb(image)
        model = self.bundle.model
        pixels = to_pixels(rgb, model.config.image_size) if rgb is not None else None
        text = selection_prompt(task, self.fleet, model.vision.num_tokens)
        input_ids = self.bundle.tokenizer(text, return_tensors="pt")["input_ids"][0]
        info = image_info if image_info is not None or rgb is None else ImageInfo(stamp=None, frame_id="", age_ms=None)
        return _Prepared(request_id, task, task_id, input_ids, pixels, info, (time.perf_counter() - start) * 1000)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def _run(self, items: list[_Prepared], top_k: int, return_reasoning: bool,
             fleet_status: FleetStatus) -> list[dict[str, Any]]:
        start = time.perf_counter()
        probabilities, scenes = self._score(items)
        model_ms = (time.perf_counter() - start) * 1000 / len(items)
        documents = []
        for item, probs, scene in zip(items, probabilities, scenes):
            # The scene seen in the camera image lets plugins rule robots out (no drone under water).
            vetoes = self.fleet.infeasible(TaskContext(task=item.task, scene=scene))
            candidates = self._rank(probs, vetoes, fleet_status)
            reasoning, plan, reasoning_ms = None, None, 0.0
            if return_reasoning:
                began = time.perf_counter()
                reasoning, plan = self._explain(item, [c.robot_id for c in candidates if c.selected])
                reasoning_ms = (time.perf_counter() - began) * 1000
                named = set(reasoning.decision)
                candidates = [replace(c, reasoning=reasoning.steps if c.robot_id in named else None) for c in candidates]
            selection = Selection(
                request_id=item.request_id, task=item.task, status="ok", errors=[], stamp=time.time(),
                image=replace(item.image, scene=tuple(sorted(scene))) if item.image else None, fleet_ids=self.fleet.ids, fleet_hash=self.fleet.hash,
                model_name=self.bundle.name, model_sha=self.bundle.sha, top_k=top_k,
                candidates=candidates[:top_k], reasoning=reasoning, plan=plan,
                latency_ms={"preprocess": item.preprocess_ms, "model": model_ms, "reasoning": reasoning_ms},
                task_id=item.task_id,
            )
            document = selection.to_document()
            validate_document(document)
            documents.append(document)
        return documents

    def _score(self, items: list[_Prepared]) -> tuple[torch.Tensor, list[frozenset[str]]]:
        """Calibrated per-robot probabilities (B, N) for all items in one padded forward pass, and the
        scene tags recognised in each item's image (empty without an image or a scene head)."""
        model = self.bundle.model
        length = max(item.input_ids.numel() for item in items)
        pad = self.bundle.tokenizer.pad_token_id
        input_ids = torch.full((len(items), length), pad, dtype=torch.long)
        attention = torch.zeros((len(items), length), dtype=torch.long)
        for row, item in enumerate(items):
            input_ids[row, : item.input_ids.numel()] = item.input_ids
            attention[row, : item.input_ids.numel()] = 1
        pixels, has_image = self._pixels(items)
        with self._autocast():
            outputs = model(input_ids.to(self.device), attention.to(self.device), pixels, has_image, **self._task_inputs(items))
        probabilities = torch.sigmoid(outputs["robot_logits"].float() / self.bundle.temperature).cpu()
        scenes = [frozenset() for _ in items]
        if "scene_logits" in outputs and self.scene_vetoes:
            seen = (outputs["scene_logits"].float() > 0).cpu()  # probability above 0.5
            tags = model.config.scene_tags
            scenes = [frozenset(t for t, on in zip(tags, row) if on) if item.pixels is not None else frozenset()
                      for item, row in zip(items, seen.tolist())]
        return probabilities, scenes

    def _task_inputs(self, items: list[_Prepared]) -> dict[str, torch.Tensor]:
        """Sentence-encoder inputs of the tasks, for models that have one."""
        encoded = self.bundle.task_inputs([item.task for item in items])
        return {f"task_{key}": value.to(self.device) for key, value in encoded.items()}

    def _pixels(self, items: list[_Prepared]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if all(item.pixels is None for item in items):
            return None, None
        size = self.bundle.model.config.image_size
        pixels = torch.stack([item.pixels if item.pixels is not None else torch.zeros(3, size, size) for item in items])
        has_image = torch.tensor([item.pixels is not None for item in items])
        return pixels.to(self.device), has_image.to(self.device)

    def _rank(self, probabilities: torch.Tensor, vetoes: dict[str, list[str]], status: FleetStatus) -> list[Candidate]:
        """Free feasible robots by confidence, then busy, offline and vetoed ones.

        The first free feasible robot and every other one above the confidence threshold are selected.
        """
        order = sorted(range(len(self.fleet)), key=lambda i: (
            self.fleet.ids[i] in vetoes, RANK_ORDER[status.of(self.fleet.ids[i])], -float(probabilities[i])))
        candidates: list[Candidate] = []
        for rank, index in enumerate(order, start=1):
            robot = self.fleet.robots[index]
            confidence = float(probabilities[index])
            eligible = robot.id not in vetoes and status.selectable(robot.id)
            selected = eligible and (not any(c.selected for c in candidates) or confidence >= self.confidence_threshold)
            candidates.append(Candidate(rank=rank, robot_id=robot.id, robot_type=robot.name, confidence=confidence,
                                        selected=selected, infeasible=vetoes.get(robot.id, []),
                                        availability=status.of(robot.id)))
        return candidates

    def _explain(self, item: _Prepared, selected: list[str]) -> tuple[Reasoning, Plan]:
        """Generate the 4 steps, then the plan, as text; parse and check both against the fleet."""
        model, tokenizer, config = self.bundle.model, self.bundle.tokenizer, self.bundle.model.config
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (REASONING_START, REASONING_END, ACTION_PLAN)}
        input_ids = item.input_ids.unsqueeze(0).to(self.device)
        attention = torch.ones_like(input_ids)
        pixels, has_image = self._pixels([item])
        # The LM is told the head's decision and explains it (see ember_core/model/prompt.py).
        given = tokenizer(decision_text(selected, self.fleet))["input_ids"] + [ids[REASONING_START]]
        with self._autocast():
            past = model(input_ids, attention, pixels, has_image, use_cache=True, **self._task_inputs([item]))["past_key_values"]
            steps, past, attention = greedy_continue(
                model.language_model, past, attention, given, config.max_reasoning_tokens,
                {ids[REASONING_END], tokenizer.eos_token_id},
            )
            plan_ids, _, _ = greedy_continue(
                model.language_model, past, attention, [ids[REASONING_END], ids[ACTION_PLAN]],
                config.max_plan_tokens, {tokenizer.eos_token_id},
            )
        reasoning = parse_reasoning(tokenizer.decode(steps, skip_special_tokens=True), self.fleet, selected)
        plan = parse_plan(tokenizer.decode(plan_ids, skip_special_tokens=True), self.fleet, allow_empty=True)
        return reasoning, plan

    def error_document(self, request_id: str, task: Any, status: str, message: str, image: ImageInfo | None = None,
                       task_id: str | None = None) -> dict[str, Any]:
        """A schema-valid non-ok document (no_image, rejected_busy, ...) naming this selector's fleet and model."""
        text = task if isinstance(task, str) else repr(task)
        selection = Selection.error(request_id, text, status, [message], self.fleet, self.bundle.name,
                                    self.bundle.sha, image, task_id)
        return selection.to_document()
