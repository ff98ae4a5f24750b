"""ONNX export: an EmberVLM's parts as the graphs of ember_core.onnx_layout, with dynamic batch and sequence axes.

Each graph is a thin module over the model's own code (the vision part re-parameterised by timm, the
LM with a key/value cache, the robot head's pieces, `token_scores`), traced by torch's TorchScript
exporter. The LM runs with eager attention while it is traced: its mask is then built from the
inputs, never from the example's shapes, and its softmax inputs are floored (ember_train.onnx_softmax). The
sentence encoder is traced with eager attention too, and its layers fused by onnxruntime's transformer optimizer.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnxruntime.transformers import optimizer
from timm.models import reparameterize_model
from transformers import DynamicCache

from ember_core.atomic import atomic_directory
from ember_core.card_classifier import fit_card_classifier
from ember_core.model.vlm import EmberVLM
from ember_core.onnx_layout import (
    DEFAULT_OPSET,
    LANGUAGE,
    NEW_ROBOT_ENCODER,
    NEW_ROBOT_INPUTS,
    ROBOT_HEAD,
    TASK_TOKENIZER_DIR,
    TEXT_ENCODER,
    TOKEN_SCORES,
    VISION,
    Manifest,
    graph_file,
    past_names,
    present_names,
)
from ember_core.pretrained import load_pretrained, resolve_model_dir
from ember_train.onnx_parity import Check, parity_checks
from ember_train.onnx_softmax import floor_softmax_inputs

# Sizes of the examples the graphs are traced with (above 1, so no axis is traced as a constant).
_BATCH, _SEQUENCE, _PAST = 2, 7, 3


class VisionGraph(nn.Module):
    """pixels -> visual tokens (and scene logits), the RepViT backbone with its training-time branches fused."""

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.vision = reparameterize_model(model.vision)  # a fused copy; the model keeps its branches
        self.scene_head = model.scene_head

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        visual = self.vision(pixel_values)
        return (visual,) if self.scene_head is None else (visual, self.scene_head(visual.mean(1)))


class TextGraph(nn.Module):
    """Sentence-encoder ids -> unit sentence embeddings (the sentence encoder's or the new-robot encoder's)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)


class LanguageGraph(nn.Module):
    """Token ids (image slots filled as `EmberVLM.embed` fills them) after a key/value cache -> hidden states and
    the extended cache."""

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.model = model
        self.layers = model.language_model.config.num_hidden_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, visual_tokens: torch.Tensor,
                has_image: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        language = self.model.language_model
        cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2])), config=language.config)
        output = language.base_model(inputs_embeds=self.model.embed(input_ids, visual_tokens, has_image),
                                     attention_mask=attention_mask, cache=cache, use_cache=True)
        present = [tensor for layer in output.cache.layers for tensor in (layer.keys, layer.values)]
        return (output.last_hidden_state, *present)


class HeadGraph(nn.Module):
    """The robot head for any fleet: `robot_rows` picks each robot's trained MLP row and memory vote (-1: none, scored
    as a new robot, `RobotHead.new_robot_logits`)."""

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.head = model.robot_head

    def forward(self, selection_state: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The robot logits, and with a sentence encoder each task's familiarity (`RobotHead.familiarity`)."""
        head = self.head
        classifier = None
        if head.text_dim:
            task_embedding, card_embeddings, card_owner, classifier_weight, classifier_bias, robot_rows, *new = inputs
            classifier = (classifier_weight, classifier_bias)
            new_robot = (new[0], (new[1], new[2])) if new else (task_embedding, classifier)
        else:
            (card_embeddings, robot_rows), task_embedding, card_owner, new_robot = inputs, None, None, None
        row = robot_rows.clamp(min=0)
        mlp_logits = head.mlp_logits(selection_state, task_embedding)[:, row]
        card_logits, gate = head.card_logits(selection_state, card_embeddings, task_embedding, card_owner,
                                             robot_rows.shape[0], classifier, new_robot)
        known = (robot_rows >= 0) & head.known[row]
        vote = head.vote(task_embedding)
        logits = head.blend(mlp_logits, card_logits, gate, known, None if vote is None else vote[:, row],
                            head.new_robot_logits(*new_robot) if head.text_dim else None)["robot_logits"]
        return (logits, gate[:, 0]) if head.text_dim else logits


class ScoresGraph(nn.Module):
    """Hidden states, candidate ids and their relevance -> the explanation decoder's candidate scores."""

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor, candidates: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        return self.model.token_scores(hidden, candidates, relevance)


class _GraphWriter:
    """Traces modules into ONNX files of one directory and opset, and remembers which graphs it wrote."""

    def __init__(self, directory: Path, opset: int):
        self.directory, self.opset, self.written = directory, opset, []

    def write(self, graph: str, module: nn.Module, args: tuple, inputs: list[str], outputs: list[str],
              axes: dict[str, dict[int, str]]) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
            torch.onnx.export(module.eval(), args, str(self.directory / graph_file(graph)), input_names=inputs,
                              output_names=outputs, dynamic_axes={name: axes[name] for name in [*inputs, *outputs]},
                              opset_version=self.opset, dynamo=False)
        self.written.append(graph)


def export_graphs(model: EmberVLM, card_inputs: dict[str, torch.Tensor], directory: Path, opset: int) -> list[str]:
    """Write the model's graphs into `directory`; the names of those written. The model is made fp32 on the CPU.

    `card_inputs` are the processor's, for an example of the head's card embeddings.
    """
    model = model.float().cpu().eval()
    writer = _GraphWriter(directory, opset)
    pixels = torch.randn(_BATCH, 3, model.config.image_size, model.config.image_size)
    scene = ["scene_logits"] if model.scene_head is not None else []
    writer.write(VISION, VisionGraph(model), (pixels,), ["pixel_values"], ["visual_tokens", *scene],
                 dict.fromkeys(["pixel_values", "visual_tokens", *scene], {0: "batch"}))
    if model.text_encoder is not None:
        _export_sentence_encoder(writer, TEXT_ENCODER, model.text_encoder, model.text_encoder.model)
    if model.new_robot_encoder is not None:
        _export_sentence_encoder(writer, NEW_ROBOT_ENCODER, model.new_robot_encoder, model.new_robot_encoder.model)
    with torch.no_grad():
        _export_language(model, writer, model.vision(pixels))
    _export_head(model, writer, card_inputs)
    width = model.language_model.config.hidden_size
    candidates = {0: "batch", 1: "candidates"}
    writer.write(TOKEN_SCORES, ScoresGraph(model), (torch.randn(_BATCH, width), torch.randint(0, 1000, (_BATCH, 3)),
                                                    torch.rand(_BATCH, 3)),
                 ["hidden", "candidates", "relevance"], ["scores"],
                 {"hidden": {0: "batch"}, "candidates": candidates, "relevance": candidates, "scores": candidates})
    return writer.written


def _export_sentence_encoder(writer: _GraphWriter, graph: str, module: nn.Module, encoder: nn.Module) -> None:
    """A sentence encoder (`module`, around the BERT model `encoder`) traced with eager attention, the pattern
    onnxruntime's BERT optimizer fuses: each layer's attention, and its layer norms and GELU with the adds around
    them, become single kernels (the graph runs 5-9% faster on a task, 2 cores). The fused attention reads the
    mask as lengths: rows must be right-padded."""
    ids = torch.randint(1000, 2000, (_BATCH, _SEQUENCE))
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # a padded row, so padding is traced as data
    attention = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")
    try:
        writer.write(graph, TextGraph(module), (ids, mask), ["input_ids", "attention_mask"], ["embeddings"],
                     {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                      "embeddings": {0: "batch"}})
    finally:
        encoder.set_attn_implementation(attention)
    path = str(writer.directory / graph_file(graph))
    logging.disable(logging.INFO)  # the optimizer logs every fusion it makes
    try:
        fused = optimizer.optimize_model(path, model_type="bert", num_heads=encoder.config.num_attention_heads,
                                         hidden_size=encoder.config.hidden_size, opt_level=0)
        fused.save_model_to_file(path)
    finally:
        logging.disable(logging.NOTSET)


def _export_language(model: EmberVLM, writer: _GraphWriter, visual: torch.Tensor) -> None:
    # An example with image slots, a padded row and a cache, so none of them is traced as a constant.
    config = model.language_model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    slots = torch.full((_BATCH, visual.shape[1]), model.image_token_id)
    ids = torch.cat([torch.randint(1000, 2000, (_BATCH, 2)), slots, torch.randint(1000, 2000, (_BATCH, _SEQUENCE))], 1)
    mask = torch.ones(_BATCH, _PAST + ids.shape[1], dtype=torch.long)
    mask[1, -3:] = 0
    past = [torch.randn(_BATCH, heads, _PAST, config.hidden_size // heads) for _ in range(2 * layers)]
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "total"},
            "visual_tokens": {0: "batch"}, "has_image": {0: "batch"}, "hidden_states": {0: "batch", 1: "tokens"}}
    axes.update(dict.fromkeys(past_names(layers), {0: "batch", 2: "past"}))
    axes.update(dict.fromkeys(present_names(layers), {0: "batch", 2: "total"}))
    language = model.language_model
    attention = language.config._attn_implementation
    language.set_attn_implementation("eager")
    try:
        writer.write(LANGUAGE, LanguageGraph(model), (ids, mask, visual, torch.tensor([True, False]), *past),
                     ["input_ids", "attention_mask", "visual_tokens", "has_image", *past_names(layers)],
                     ["hidden_states", *present_names(layers)], axes)
    finally:
        language.set_attn_implementation(attention)
    path = writer.directory / graph_file(LANGUAGE)
    graph = onnx.load(path)
    floor_softmax_inputs(graph, writer.opset)
    onnx.save(graph, path)


def _export_head(model: EmberVLM, writer: _GraphWriter, card_inputs: dict[str, torch.Tensor]) -> None:
    head = model.robot_head
    robots, width = model.num_robots, model.language_model.config.hidden_size
    state, rows = torch.randn(_BATCH, width), torch.arange(robots)
    if head.text_dim:
        owner = card_inputs["text_owner"]
        cards = F.normalize(torch.randn(owner.numel(), head.text_dim), dim=-1)
        task = F.normalize(torch.randn(_BATCH, head.text_dim), dim=-1)
        weight, bias = fit_card_classifier(cards.numpy(), owner.numpy(), robots)
        args = (state, task, cards, owner, torch.from_numpy(weight), torch.from_numpy(bias), rows)
        names = ["selection_state", "task_embedding", "card_embeddings", "card_owner", "card_classifier_weight",
                 "card_classifier_bias", "robot_rows"]
        if model.new_robot_encoder is not None:  # the new-robot encoder's task embedding and card classifier
            args += (task, torch.from_numpy(weight), torch.from_numpy(bias))
            names += NEW_ROBOT_INPUTS
    else:
        args, names = (state, torch.randn(robots, width), rows), ["selection_state", "card_embeddings", "robot_rows"]
    axes = {"selection_state": {0: "batch"}, "task_embedding": {0: "batch"}, "card_embeddings": {0: "cards"},
            "card_owner": {0: "cards"}, "card_classifier_weight": {0: "robots"}, "card_classifier_bias": {0: "robots"},
            "robot_rows": {0: "robots"}, "robot_logits": {0: "batch", 1: "robots"}, "familiarity": {0: "batch"},
            "new_robot_task_embedding": {0: "batch"}, "new_robot_classifier_weight": {0: "robots"},
            "new_robot_classifier_bias": {0: "robots"}}
    outputs = ["robot_logits", "familiarity"] if head.text_dim else ["robot_logits"]
    writer.write(ROBOT_HEAD, HeadGraph(model), args, names, outputs, axes)


class ParityError(ValueError):
    """The export differs from the torch model past a tolerance; `checks` holds every comparison."""

    def __init__(self, checks: list[Check]):
        failed = [check for check in checks if not check.passed]
        super().__init__("the ONNX export does not match the torch model: " + "; ".join(
            f"{check.name}: {check.difference:.3g} > {check.tolerance:.3g}" for check in failed)
            + "; nothing was written")
        self.checks = checks


def write_export(model_dir: str | os.PathLike | None, out: str | os.PathLike, opset: int = DEFAULT_OPSET) -> list[Check]:
    """Export the model in `model_dir` (None: the shipped one) into `out` (replaced atomically) as a complete
    model for the onnxruntime backend: graphs, processor files, config and manifest (ember_core.onnx_layout).

    The parity check runs on the written directory before it replaces `out`; ParityError if any check fails.
    """
    source = resolve_model_dir(model_dir)
    if source is not None and Path(out).resolve() == source.resolve():
        raise ValueError(f"--out {out} is the model directory itself; export into another directory")
    model, processor = load_pretrained(model_dir)
    with atomic_directory(out) as staging:
        graphs = export_graphs(model, processor.card_inputs(), staging, opset)
        model.config.save(staging)
        processor.save_pretrained(staging)
        if processor.task_tokenizer is not None:
            processor.task_tokenizer.save_pretrained(staging / TASK_TOKENIZER_DIR)
        manifest = Manifest.of(staging, opset, {"name": model.name, "sha": model.sha}, graphs)
        manifest.write(staging)
        checks = parity_checks(model, processor, staging)
        manifest.parity = [check.to_dict() for check in checks]
        manifest.write(staging)
        if not all(check.passed for check in checks):
            raise ParityError(checks)
    return checks
