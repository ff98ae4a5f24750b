"""The parity check of an ONNX export: each graph against the torch model on random inputs, then whole
selections (ranking, confidences, reasoning) of both backends on real tasks, with and without an image.

Every check has a tolerance on the largest absolute difference; a table of them is what `ember export
onnx` prints, and any check past its tolerance fails the export.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ember_core.model.vlm import EmberVLM
from ember_core.onnx_backend import KeyValues, OnnxBackend
from ember_core.onnx_layout import NEW_ROBOT_ENCODER, ROBOT_HEAD, TOKEN_SCORES, VISION
from ember_core.processor import EmberProcessor
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector

# fp32 in both runtimes: differences come from the order of sums, ~1e-6 of the values' size.
TENSOR_TOLERANCE = 1e-4
CONFIDENCE_TOLERANCE = 1e-4
# Robots whose rank differs, and explanations whose text differs, between the backends: none.
MISMATCH_TOLERANCE = 0
EXAMPLES_PER_ROBOT = 2  # real tasks: the first examples on each robot's card
EXPLAINED_TASKS = 2  # of them, selected with reasoning too


@dataclass
class Check:
    """One comparison: what was compared, the largest absolute difference (or count of mismatches), the tolerance."""

    name: str
    difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.difference <= self.tolerance)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def parity_checks(model: EmberVLM, processor: EmberProcessor, directory: Path) -> list[Check]:
    """Compare the export in `directory` with the (fp32, CPU) torch model it was made from."""
    backend = OnnxBackend.load(directory, processor.fleet)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        checks = _graph_checks(model, processor, backend, generator)
    return checks + _selection_checks(model, processor, directory)


def _graph_checks(model: EmberVLM, processor: EmberProcessor, backend: OnnxBackend,
                  generator: torch.Generator) -> list[Check]:
    graphs, checks = backend.model, []
    size = model.config.image_size
    pixels = torch.randn(3, 3, size, size, generator=generator)
    visual, *scene = graphs.run(VISION, {"pixel_values": pixels.numpy()})
    reference = model.vision(pixels)
    checks.append(Check("vision: visual tokens, random pixels", _difference(reference, visual), TENSOR_TOLERANCE))
    if scene:
        checks.append(Check("vision: scene logits, random pixels", _difference(model.scene_head(reference.mean(1)), scene[0]),
                            TENSOR_TOLERANCE))
    ids = torch.randint(1000, 20000, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    if model.text_encoder is not None:
        checks.append(Check("text encoder: embeddings, random ids", _difference(
            model.text_encoder(ids, mask), graphs.sentences(ids.numpy(), mask.numpy())), TENSOR_TOLERANCE))
    if model.new_robot_encoder is not None:
        checks.append(Check("new-robot encoder: embeddings, random ids", _difference(
            model.new_robot_encoder(ids, mask), graphs.sentences(ids.numpy(), mask.numpy(), NEW_ROBOT_ENCODER)),
            TENSOR_TOLERANCE))
    hidden, cache = graphs.language(ids.numpy(), mask.numpy())
    output = model.language_model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=True)
    real = mask.bool()
    checks.append(Check("language: hidden states, random ids with padding",
                        _difference(output.hidden_states[-1][real], hidden[real.numpy()]), TENSOR_TOLERANCE))
    first = KeyValues([array[:1] for array in cache.arrays])  # the cache of the first (unpadded) row
    fed = [1500, 1501, 1502]
    torch_cache = model.language_model(input_ids=ids[:1], use_cache=True).cache
    checks.append(Check("language: hidden state after a cache, random ids", _difference(
        model.feed(fed, torch_cache), backend.feed(fed, first)), TENSOR_TOLERANCE))
    checks += _head_checks(model, backend, generator)
    candidates = torch.randint(0, 20000, (4, 5), generator=generator)
    relevance, states = torch.rand(4, 5, generator=generator), torch.randn(4, graphs.width, generator=generator)
    scores = graphs.run(TOKEN_SCORES, {"hidden": states.numpy(), "candidates": candidates.numpy(),
                                       "relevance": relevance.numpy()})[0]
    checks.append(Check("token scores: random states and candidates",
                        _difference(model.token_scores(states, candidates, relevance), scores), TENSOR_TOLERANCE))
    return checks


def _head_checks(model: EmberVLM, backend: OnnxBackend, generator: torch.Generator) -> list[Check]:
    """The robot head's logits and, with a sentence encoder, each task's familiarity (which gates the part scorer)."""
    head = model.robot_head
    state = torch.randn(3, backend.model.width, generator=generator)
    cards = torch.from_numpy(backend.cards["card_embeddings"])
    inputs = {"selection_state": state.numpy(), **backend.cards}
    task, owner, classifier = None, None, model.card_classifier(cards)
    if head.text_dim:
        task = torch.nn.functional.normalize(torch.randn(3, head.text_dim, generator=generator), dim=-1)
        if len(head.task_memory):
            task[0] = head.task_memory[0]  # a remembered task: the memory's vote counts
        owner = torch.from_numpy(backend.cards["card_owner"])
        inputs["task_embedding"] = inputs["new_robot_task_embedding"] = task.numpy()
    new_robot = None
    if model.new_robot_encoder is not None:  # the task above stands for its embedding by the new-robot encoder too
        new_robot = (task, tuple(torch.from_numpy(backend.cards[f"new_robot_classifier_{part}"])
                                 for part in ("weight", "bias")))
    exported = backend.model.run(ROBOT_HEAD, {name: inputs[name] for name in backend.model.head_inputs})
    reference = head(state, cards, task, owner, classifier, new_robot)
    checks = [Check("robot head: logits, random states", _difference(reference["robot_logits"], exported[0]),
                    TENSOR_TOLERANCE)]
    if head.text_dim:
        checks.append(Check("robot head: familiarity, random states",
                            _difference(reference["familiarity"], exported[1]), TENSOR_TOLERANCE))
    return checks


def _selection_checks(model: EmberVLM, processor: EmberProcessor, directory: Path) -> list[Check]:
    fleet = processor.fleet
    selectors = [Selector((model, processor), fleet=fleet, device="cpu"), Selector(directory, fleet=fleet, backend="onnx")]
    tasks = [task for robot in fleet for task in robot.examples[:EXAMPLES_PER_ROBOT]]
    size = model.config.image_size
    requests = ([SelectionRequest(task, top_k=len(fleet), return_reasoning=False) for task in tasks]
                + [SelectionRequest(task, render_scene(task, size), top_k=len(fleet), return_reasoning=False)
                   for task in tasks]
                + [SelectionRequest(task, image, top_k=len(fleet)) for task in tasks[:EXPLAINED_TASKS]
                   for image in (None, render_scene(task, size))])
    torch_documents, onnx_documents = ([selection.to_document() for selection in selector.select_batch(requests)]
                                       for selector in selectors)
    confidence, ranks, texts = 0.0, 0, 0
    for ours, theirs in zip(torch_documents, onnx_documents):
        by_id = {candidate["robot_id"]: candidate["confidence"] for candidate in theirs["candidates"]}
        confidence = max([confidence] + [abs(c["confidence"] - by_id[c["robot_id"]]) for c in ours["candidates"]])
        ranks += sum(a["robot_id"] != b["robot_id"] for a, b in zip(ours["candidates"], theirs["candidates"]))
        texts += (ours["reasoning"] or {}).get("text") != (theirs["reasoning"] or {}).get("text")
    count = f"{len(requests)} real tasks, with and without an image"
    return [Check(f"selection: confidences, {count}", confidence, CONFIDENCE_TOLERANCE),
            Check(f"selection: robots ranked differently, {count}", ranks, MISMATCH_TOLERANCE),
            Check(f"selection: explanations that differ, {2 * EXPLAINED_TASKS} of them", texts, MISMATCH_TOLERANCE)]


def _difference(reference: torch.Tensor, exported: np.ndarray) -> float:
    return float(np.abs(reference.detach().float().numpy() - exported).max())


def format_checks(checks: list[Check]) -> str:
    """The checks as a table: difference, tolerance and verdict per line."""
    width = max(len(check.name) for check in checks)
    lines = [f"{'check':<{width}}  {'max abs diff':>12}  {'tolerance':>9}"]
    lines += [f"{check.name:<{width}}  {check.difference:>12.3g}  {check.tolerance:>9.3g}  "
              f"{'ok' if check.passed else 'FAILED'}" for check in checks]
    return "\n".join(lines)
