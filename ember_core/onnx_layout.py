"""An exported ONNX model directory: its files, each graph's inputs and outputs, and the manifest listing them.

`ember export onnx` writes the directory and the onnxruntime backend (ember_core.onnx_backend) reads
it; both take every name from here. Beside the graphs it holds what the
processor needs (config.json, processor_config.json with the calibration, fleet.json, the tokenizer
files and the sentence encoder's tokenizer in task_tokenizer/) and manifest.json:

    {"format": "ember.onnx/2", "opset": 17, "model": {"name": ..., "sha": ...},
     "graphs": {"language": {"file": "language.onnx", "sha256": ...}, ...}, "parity": [...],
     "quantization": {}}

`quantization` is empty for an fp32 export; `ember export quantize` records there which graphs it made int8,
the measurements behind each choice, the fp32 graphs' hashes and its accuracy gate.

The graphs (B batch, L new tokens, P cached tokens, K image tokens, M card embeddings, N robots):

    vision        pixel_values (B,3,S,S) -> visual_tokens (B,K,H)[, scene_logits (B,tags)]
    text_encoder  input_ids, attention_mask (B,T), right-padded -> embeddings (B,D)  (models with a sentence encoder)
    language      input_ids (B,L), attention_mask (B,P+L), visual_tokens, has_image (B,), past.* (B,heads,P,d)
                  -> hidden_states (B,L,H), present.* (B,heads,P+L,d)
    robot_head    selection_state (B,H)[, task_embedding (B,D)], card_embeddings (M,C)[, card_owner (M,),
                  card_classifier_weight (N,D), card_classifier_bias (N,)], robot_rows (N,) -> robot_logits (B,N)
    token_scores  hidden (B,H), candidates (B,K'), relevance (B,K') -> scores (B,K')

`robot_rows` gives each robot of the fleet in use its row of the exported head, -1 for a robot the model
was not trained on (scored from its card alone, as the torch path does after `remap_robot_rows`). The card
classifier (`ember_core.card_classifier`) is fitted by the backend on the fleet's card embeddings and kept with
them in the card cache (`ember_core.card_cache`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ember_core import fields
from ember_core.atomic import write_text_atomic
from ember_core.digest import file_sha256

FORMAT = "ember.onnx/2"  # /2: the robot head also outputs each task's familiarity
DEFAULT_OPSET = 17  # what `ember export onnx` writes unless told otherwise
MANIFEST_FILE = "manifest.json"
TASK_TOKENIZER_DIR = "task_tokenizer"
VISION, TEXT_ENCODER, LANGUAGE, ROBOT_HEAD, TOKEN_SCORES = "vision", "text_encoder", "language", "robot_head", "token_scores"
NEW_ROBOT_ENCODER = "new_robot_encoder"  # models with one (ember_core.model.new_robot_encoder)
# The robot head's inputs from the new-robot encoder, after the others (models with one).
NEW_ROBOT_INPUTS = ["new_robot_task_embedding", "new_robot_classifier_weight", "new_robot_classifier_bias"]
GRAPHS = (VISION, TEXT_ENCODER, NEW_ROBOT_ENCODER, LANGUAGE, ROBOT_HEAD, TOKEN_SCORES)


def graph_file(graph: str) -> str:
    return f"{graph}.onnx"


def past_names(layers: int) -> list[str]:
    """The language graph's cache inputs, key then value of each layer."""
    return [f"past.{layer}.{part}" for layer in range(layers) for part in ("key", "value")]


def present_names(layers: int) -> list[str]:
    """The language graph's cache outputs, in the order of `past_names`."""
    return [f"present.{layer}.{part}" for layer in range(layers) for part in ("key", "value")]


@dataclass
class Manifest:
    """manifest.json: the format, the opset, the model the graphs came from, each graph's file and sha256, the
    parity check the export passed, and what quantization changed."""

    opset: int
    model: dict[str, str]  # {"name": ..., "sha": ...} of the weights exported
    graphs: dict[str, dict[str, str]]  # graph -> {"file": ..., "sha256": ...}
    parity: list[dict[str, Any]] = field(default_factory=list)
    quantization: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    @classmethod
    def of(cls, directory: Path, opset: int, model: dict[str, str], graphs: list[str]) -> Manifest:
        """The manifest of the graphs written into `directory`, with their hashes."""
        return cls(opset, model, {graph: {"file": graph_file(graph), "sha256": file_sha256(directory / graph_file(graph))}
                                  for graph in graphs})

    def write(self, directory: Path) -> None:
        write_text_atomic(Path(directory) / MANIFEST_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """manifest.json of an export, its graphs checked against their sha256; ValueError naming the file otherwise."""
        path = Path(directory) / MANIFEST_FILE
        data = fields.read_json(path)
        try:
            data = fields.known_keys(data, {"format", "opset", "model", "graphs", "parity", "quantization"}, "manifest")
            if data.get("format") != FORMAT:
                raise fields.FieldError("format", f"expected {FORMAT!r}, got {data.get('format')!r}")
            manifest = cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: not an Ember ONNX manifest ({err}); export the model again") from None
        for graph, entry in manifest.graphs.items():
            if graph not in GRAPHS:
                raise ValueError(f"{path}: unknown graph {graph!r}; known: {', '.join(GRAPHS)}")
            graph_path = Path(directory) / graph_file(graph)
            if not graph_path.is_file() or file_sha256(graph_path) != entry.get("sha256"):
                raise ValueError(f"{graph_path}: missing, or not the file {MANIFEST_FILE} lists (sha256 differs); "
                                 f"export the model again")
        return manifest
