"""The onnxruntime backend: the graphs of an `ember export onnx` directory behind the Selector, without torch.

The processor (the export's tokenizers and processor_config.json, for the fleet in use) prepares the
same numpy batch as for torch; the graphs (ember_core.onnx_layout) replace the EmberVLM's parts. The
fleet's cards are embedded here when the backend loads, so a fleet with robots the model was not
trained on is scored from their cards, as the torch path does. The prompt's parts that are the same in
every request run once too (PromptPrefix): a text-only request runs only its own tokens, one with an image
its image slots and its own tokens; and the sentence encoder runs beside the vision and language graphs.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnxruntime as ort

from ember_core.backend import Outputs
from ember_core.card_cache import card_embeddings
from ember_core.card_classifier import fit_card_classifier
from ember_core.fleet import Fleet
from ember_core.model.config import EmberVLMConfig
from ember_core.model.text_tokenizer import TextTokenizer
from ember_core.model.tokenizer import SELECTION, load_saved_tokenizer
from ember_core.new_robot_steps import fit_new_robot_classifier, fleet_steps, labelled_step_embeddings
from ember_core.onnx_layout import (
    LANGUAGE,
    NEW_ROBOT_ENCODER,
    ROBOT_HEAD,
    TASK_TOKENIZER_DIR,
    TEXT_ENCODER,
    TOKEN_SCORES,
    VISION,
    Manifest,
    graph_file,
    past_names,
)
from ember_core.processor import PROCESSOR_FILE, EmberProcessor, ProcessorConfig
from ember_core.processor_files import processor_matches_model
from ember_core.relevance import PhraseRelevance

DEVICES = ("auto", "cpu")  # the CPU execution provider: what robots and edge boxes have
# Card phrases are embedded this many at a time, similar lengths together: the 283 phrases of the default fleet
# in one batch padded to the longest took 1.9 s and 470 MB peak RSS, in chunks of 32 1.2 s and 320 MB (2 cores).
CARD_CHUNK = 32


@dataclass
class KeyValues:
    """The language graph's cache: (B, heads, P, d) keys and values of each layer, in `past_names` order."""

    arrays: list[np.ndarray]


class OnnxGraphs:
    """One onnxruntime session per graph of an export, and the shapes the runtime reads off them."""

    def __init__(self, directory: Path, manifest: Manifest):
        # A sentence encoder runs beside the vision -> language -> head chain (OnnxBackend.forward), and the two
        # share the CPUs: on 2 cores, one thread each against the encoder on both gave a request with a 640x480
        # image 15-16 ms (p50) instead of 19, a text-only one 9-10 ms instead of 7-8. Without a sentence encoder
        # each graph takes onnxruntime's default of a thread per core.
        threads = _half_the_cpus() if TEXT_ENCODER in manifest.graphs else 0
        self.sessions = {graph: ort.InferenceSession(str(directory / graph_file(graph)), _options(threads),
                                                     providers=["CPUExecutionProvider"])
                         for graph in manifest.graphs}
        past = [node for node in self.sessions[LANGUAGE].get_inputs() if node.name.startswith("past.")]
        self.layers = len(past) // 2
        _, self.heads, _, self.head_dim = past[0].shape
        visual = next(node for node in self.sessions[LANGUAGE].get_inputs() if node.name == "visual_tokens")
        _, self.image_tokens, self.width = visual.shape
        self.text_encoder = self.sessions.get(TEXT_ENCODER)
        self.new_robot_encoder = self.sessions.get(NEW_ROBOT_ENCODER)
        self.head_inputs = [node.name for node in self.sessions[ROBOT_HEAD].get_inputs()]
        self.recorded: dict[str, list[dict[str, np.ndarray]]] | None = None  # see `recording`

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.recorded is not None:
            self.recorded.setdefault(graph, []).append(inputs)
        return self.sessions[graph].run(None, inputs)

    @contextmanager
    def recording(self) -> Iterator[dict[str, list[dict[str, np.ndarray]]]]:
        """Within the block, every graph's inputs are kept, by graph in call order (`ember export quantize`
        times its int8 candidates on them)."""
        self.recorded = {}
        try:
            yield self.recorded
        finally:
            self.recorded = None

    def language(self, input_ids: np.ndarray, attention_mask: np.ndarray, cache: KeyValues | None = None,
                 visual: np.ndarray | None = None, has_image: np.ndarray | None = None) -> tuple[np.ndarray, KeyValues]:
        """Hidden states (B, L, H) of ids after the cache (none: an empty one), and the extended cache. Rows
        without `visual` (or with has_image False) get the model's no-image vector in their image slots."""
        batch = len(input_ids)
        if visual is None:
            visual = np.zeros((batch, self.image_tokens, self.width), dtype=np.float32)
            has_image = np.zeros(batch, dtype=bool)
        if cache is None:
            cache = KeyValues([np.zeros((batch, self.heads, 0, self.head_dim), dtype=np.float32)] * (2 * self.layers))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "visual_tokens": visual,
                  "has_image": has_image, **dict(zip(past_names(self.layers), cache.arrays))}
        hidden, *present = self.run(LANGUAGE, inputs)
        return hidden, KeyValues(present)

    def sentences(self, input_ids: np.ndarray, attention_mask: np.ndarray, graph: str = TEXT_ENCODER) -> np.ndarray:
        """Unit sentence embeddings (B, D) of sentence-encoder ids, by the sentence encoder or NEW_ROBOT_ENCODER."""
        return self.run(graph, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


@dataclass
class PromptPrefix:
    """The language graph's key/values of the start of the prompt that is the same in every request of a fleet,
    computed once: for text-only batches the whole prompt before the task (the image slots hold the no-image
    vector), for batches with images the fleet's cards before the image slots.

    A batch then runs the graph on the rest alone (~16 or ~20 of ~280 tokens for the default fleet): causal
    attention keeps every earlier token's keys and values what a full run gives them.
    """

    ids: np.ndarray  # (P,)
    cache: KeyValues  # batch 1

    @classmethod
    def of(cls, graphs: OnnxGraphs, ids: list[int]) -> PromptPrefix:
        prefix = np.array([ids], dtype=np.int64)
        _, cache = graphs.language(prefix, np.ones_like(prefix))
        return cls(prefix[0], cache)

    def starts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> bool:
        """Whether every row begins with the prefix, unpadded, and goes on after it."""
        length = len(self.ids)
        return (input_ids.shape[1] > length and bool((input_ids[:, :length] == self.ids).all())
                and bool(attention_mask[:, :length].all()))

    def batch_cache(self, batch: int) -> KeyValues:
        return KeyValues([np.repeat(array, batch, axis=0) for array in self.cache.arrays])


def _half_the_cpus() -> int:
    """Half the CPUs this process may run on, at least one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // 2)


def _options(threads: int) -> ort.SessionOptions:
    """Session options with all graph optimisations and `threads` intra-op threads (0: one per core)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    # Idle worker threads sleep instead of spinning: a robot shares its cores with other processes, and on
    # a busy 2-core machine spinning made a selection 4x slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxPhraseRelevance(PhraseRelevance):
    """PhraseRelevance with card phrases embedded by the export's sentence-encoder graph (`model` is the OnnxGraphs)."""

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        inputs = self.processor.encode_tasks(texts, return_tensors="np")
        return self.model.sentences(inputs["input_ids"], inputs["attention_mask"])


class OnnxBackend:
    """An export's graphs and processor for a fleet; numpy in and out (see ember_core.backend)."""

    def __init__(self, graphs: OnnxGraphs, processor: EmberProcessor, config: EmberVLMConfig, manifest: Manifest):
        self.model, self.processor, self.config = graphs, processor, config
        self.name, self.sha, self.device = f"{manifest.model['name']} (onnx)", manifest.model["sha"], "cpu"
        self.relevance = OnnxPhraseRelevance(graphs, processor)
        self.selection_id = processor.token_id(SELECTION)
        # The exported head's row of each robot of this fleet; -1: one the model was not trained on.
        rows = [config.robot_ids.index(robot) if robot in config.robot_ids else -1 for robot in processor.fleet.ids]
        # The new-robot encoder runs only for a fleet with a new robot; otherwise the head's new-robot inputs are
        # the sentence encoder's, whose new-robot logits no robot of the fleet takes.
        self.new_robots = graphs.new_robot_encoder is not None and -1 in rows
        inputs = processor.card_inputs(return_tensors="np")
        if self.new_robots:  # the fleet's labelled job steps join the new-robot encoder's card classifier
            inputs["step_rows"], inputs["step_owner"] = fleet_steps(processor.fleet.ids)
        self.graph_shas = {graph: entry["sha256"] for graph, entry in manifest.graphs.items()}
        embeddings = card_embeddings(self.graph_shas, inputs, lambda: self._card_embeddings(inputs))
        self.cards = {"robot_rows": np.array(rows, dtype=np.int64), **embeddings}
        self.text_prefix = PromptPrefix.of(self.model, processor.prompt_before_task_ids)
        # None for a model that reads the image first: nothing before its image is the same in every request.
        before_image = processor.prompt_before_image_ids
        self.image_prefix = PromptPrefix.of(self.model, before_image) if before_image else None
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-text-encoder")

    @classmethod
    def load(cls, directory: Path, fleet: Fleet, device: str = "auto") -> OnnxBackend:
        """The export in `directory` for `fleet`; ValueError naming the file that is not usable."""
        if device not in DEVICES:
            raise ValueError(f"the onnx backend runs on the CPU; device must be one of {', '.join(DEVICES)}, "
                             f"got {device!r}")
        manifest = Manifest.read(directory)
        config = EmberVLMConfig.load(directory)
        processor_config = ProcessorConfig.load(directory)
        processor_matches_model(processor_config, config, directory / PROCESSOR_FILE)
        task_tokenizer = None
        if config.text_encoder:  # the export's copy: the encoder's own package need not be installed here
            task_tokenizer = TextTokenizer.from_directory(directory / TASK_TOKENIZER_DIR)
        processor = EmberProcessor(processor_config, load_saved_tokenizer(directory), fleet, task_tokenizer)
        return cls(OnnxGraphs(directory, manifest), processor, config, manifest)

    def _card_embeddings(self, cards: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The robot head's card inputs for this fleet's `cards` (`processor.card_inputs`, and for a fleet with a new
        robot its labelled job steps, `fleet_steps`): every card phrase's sentence embedding and its robot, and the
        card classifier fitted on them (`ember_core.card_classifier`; the new-robot encoder's also on the steps,
        `ember_core.new_robot_steps`), or without a sentence encoder each card's mean hidden state in the language
        graph. Kept between runs (ember_core.card_cache)."""
        if self.model.text_encoder is not None:
            embeddings = self._phrase_embeddings(cards["text_input_ids"], cards["text_attention_mask"])
            weight, bias = fit_card_classifier(embeddings, cards["text_owner"], len(self.processor.fleet))
            arrays = {"card_embeddings": embeddings, "card_owner": cards["text_owner"],
                      "card_classifier_weight": weight, "card_classifier_bias": bias}
            if self.model.new_robot_encoder is not None:
                if self.new_robots:
                    embeddings = self._phrase_embeddings(cards["text_input_ids"], cards["text_attention_mask"],
                                                         NEW_ROBOT_ENCODER)
                    weight, bias = fit_new_robot_classifier(embeddings, cards["text_owner"], len(self.processor.fleet),
                                                            self._labelled_step_embeddings()[cards["step_rows"]],
                                                            cards["step_owner"])
                arrays.update(new_robot_classifier_weight=weight, new_robot_classifier_bias=bias)
            return arrays
        hidden, _ = self.model.language(cards["input_ids"], cards["attention_mask"])
        mask = cards["attention_mask"][..., None].astype(np.float32)  # the mean over the card's tokens (EmberVLM.card_embeddings)
        return {"card_embeddings": (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0)}

    def _labelled_step_embeddings(self) -> np.ndarray:
        """The new-robot encoder graph's embeddings of the labelled job steps, cached under that graph's sha256."""
        return labelled_step_embeddings({NEW_ROBOT_ENCODER: self.graph_shas[NEW_ROBOT_ENCODER]},
                                        self._new_robot_embeddings)

    def _new_robot_embeddings(self, texts: list[str]) -> np.ndarray:
        """The new-robot encoder graph's embeddings of texts (`ember_core.new_robot_steps.labelled_step_embeddings`)."""
        inputs = self.processor.encode_tasks(texts, return_tensors="np")
        return self._phrase_embeddings(inputs["input_ids"], inputs["attention_mask"], NEW_ROBOT_ENCODER)

    def _phrase_embeddings(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                           graph: str = TEXT_ENCODER) -> np.ndarray:
        """Sentence embeddings of many phrases, CARD_CHUNK of similar length at a time, each chunk cut to its longest."""
        order = np.argsort(attention_mask.sum(1), kind="stable")
        parts = []
        for start in range(0, len(order), CARD_CHUNK):
            rows = order[start:start + CARD_CHUNK]
            width = int(attention_mask[rows].sum(1).max())
            parts.append(self.model.sentences(input_ids[rows, :width], attention_mask[rows, :width], graph))
        embeddings = np.concatenate(parts)
        embeddings[order] = embeddings.copy()
        return embeddings

    def forward(self, batch: dict[str, np.ndarray], use_cache: bool = False) -> Outputs:
        visual = scene_logits = task_embedding = encoding = None
        if self.model.text_encoder is not None:  # on its own thread, beside the vision and language graphs
            encoding = self._encoder.submit(self.model.sentences, batch["task_input_ids"], batch["task_attention_mask"])
        if "pixel_values" in batch:
            visual, *scene = self.model.run(VISION, {"pixel_values": batch["pixel_values"]})
            scene_logits = scene[0] if scene else None
        hidden, cache, input_ids = self._language(batch, visual)
        rows = np.arange(len(input_ids))
        head = {"selection_state": hidden[rows, (input_ids == self.selection_id).argmax(1)], **self.cards}
        if encoding is not None:
            head["task_embedding"] = task_embedding = encoding.result()
            if self.model.new_robot_encoder is not None:
                head["new_robot_task_embedding"] = (self.model.sentences(
                    batch["task_input_ids"], batch["task_attention_mask"], NEW_ROBOT_ENCODER)
                    if self.new_robots else task_embedding)
        robot_logits, *familiarity = self.model.run(ROBOT_HEAD, {name: head[name] for name in self.model.head_inputs})
        return Outputs(robot_logits, scene_logits, task_embedding, cache if use_cache else None,
                       familiarity[0] if familiarity else None)

    def _language(self, batch: dict[str, np.ndarray],
                  visual: np.ndarray | None) -> tuple[np.ndarray, KeyValues, np.ndarray]:
        """The language graph's hidden states and cache of a batch, and the ids the hidden states are of: after the
        prompt prefix of its kind when every row starts with it (the cache holds the prefix too), else all."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        cache = None
        prefix = self.text_prefix if visual is None else self.image_prefix
        if prefix is not None and prefix.starts(input_ids, attention_mask):
            input_ids = input_ids[:, len(prefix.ids):]
            cache = prefix.batch_cache(len(input_ids))
        hidden, cache = self.model.language(input_ids, attention_mask, cache, visual=visual,
                                            has_image=batch.get("has_image"))
        return hidden, cache, input_ids

    def feed(self, ids: list[int], cache: KeyValues) -> np.ndarray:
        past = cache.arrays[0].shape[2]
        hidden, extended = self.model.language(np.array([ids], dtype=np.int64),
                                               np.ones((1, past + len(ids)), dtype=np.int64), cache)
        cache.arrays = extended.arrays
        return hidden[0, -1]

    def token_scores(self, hidden: np.ndarray, candidates: list[int], relevance: list[float]) -> np.ndarray:
        inputs = {"hidden": hidden[None], "candidates": np.array([candidates], dtype=np.int64),
                  "relevance": np.array([relevance], dtype=np.float32)}
        return self.model.run(TOKEN_SCORES, inputs)[0][0]
