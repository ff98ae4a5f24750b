"""A model and its processor, built, loaded or saved together; which model and which device by default.

Every entry point (Selector, CLI, training, evaluation, the ROS node) resolves the default model and
the device here, so they cannot disagree.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch

from ember_core.atomic import atomic_directory
from ember_core.excerpt import excerpt
from ember_core.fleet import Fleet
from ember_core.model.config import CONFIG_FILE, DEFAULT_PRESET, GENERATION_MARKER_TOKENS, EmberVLMConfig, preset
from ember_core.model.tokenizer import load_saved_tokenizer, load_tokenizer
from ember_core.model.vlm import WEIGHTS_FILE, EmberVLM, require_model_dir
from ember_core.model.weights import safetensors_header
from ember_core.processor import FLEET_FILE, PROCESSOR_FILE, EmberProcessor, ProcessorConfig, saved_fleet
from ember_core.processor_files import processor_matches_model
from ember_core.robots_file import load_fleet

log = logging.getLogger("ember.model")
# The trained model shipped inside the package (built by `make default-model`).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"
RANDOM_INIT_WARNING = (
    "No model given and no default model installed: using a RANDOMLY INITIALISED {preset} model. Its "
    "rankings and reasoning are meaningless; pass --model DIR (a directory written by save_pretrained)."
)


def resolve_model_dir(model: str | os.PathLike | None) -> Path | None:
    """The model directory to load: `model`, else the model shipped with Ember, else None (random init)."""
    if model is not None and str(model):
        return Path(model)
    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file() else None


def available_devices() -> list[str]:
    """The devices this machine can run a model on: cpu, cuda:0..N-1 when CUDA is available, mps when available."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" is cuda when a GPU is visible, else cpu; else one of `available_devices()` ("cuda" is the
    current GPU). ValueError listing what this machine has for anything else: a typo, `cuda:7` on a
    machine with one GPU, a device that cannot run a model (meta)."""
    available = available_devices()
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if any(device.startswith("cuda") for device in available) else "cpu")
    device = None
    if isinstance(name, str):
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError, TypeError, OverflowError):
            device = None  # not a device name torch knows
    if device is not None:
        if device.type in ("cpu", "mps") and device.index in (None, 0) and device.type in available:
            return torch.device(device.type)
        if device.type == "cuda" and (f"cuda:{device.index}" in available
                                      or (device.index is None and "cuda:0" in available)):
            return device
    raise ValueError(f"device {excerpt(name)} is not available on this machine; use auto or one of: "
                     f"{', '.join(available)}")


def build_model(config: EmberVLMConfig, fleet: Fleet) -> tuple[EmberVLM, EmberProcessor]:
    """A new model for `fleet` and its processor: random init, except parts whose config names pretrained weights.

    A pretrained language model brings its own tokenizer unless `config.tokenizer` names one.
    """
    config = dataclasses.replace(config, robot_ids=fleet.ids)
    source = config.tokenizer
    if source is None and config.language_model == "pretrained":
        source = config.lm_name_or_path
    tokenizer = load_tokenizer(source)
    model = EmberVLM(config, tokenizer)
    max_prompt_tokens = config.lm_context - config.max_reasoning_tokens - config.max_plan_tokens - GENERATION_MARKER_TOKENS
    processor_config = ProcessorConfig(image_size=config.image_size, image_tokens=model.vision.num_tokens,
                                       max_task_chars=config.max_task_chars, max_prompt_tokens=max_prompt_tokens,
                                       text_encoder=config.text_encoder,
                                       text_encoder_path=config.text_encoder_path)
    return _paired(model, EmberProcessor(processor_config, tokenizer, fleet, _task_tokenizer(model)))


def load_pretrained(model: str | os.PathLike | None = None, fleet: Fleet | None = None) -> tuple[EmberVLM, EmberProcessor]:
    """The model in a directory written by `save_pretrained`, with its processor.

    None loads the model shipped with Ember, or, when it is missing, a random-init model of the
    default preset with a loud warning. With `fleet` the head is laid out for that fleet; without,
    fleet.json must list config.json's robots. A directory Ember cannot use is a FileNotFoundError or
    ValueError naming the file and field (config.json, processor_config.json, fleet.json, the weights'
    header) before the model is built.
    """
    directory = resolve_model_dir(model)
    if directory is None:
        log.warning(RANDOM_INIT_WARNING.format(preset=DEFAULT_PRESET))
        return build_model(preset(DEFAULT_PRESET), fleet or load_fleet())
    require_model_dir(directory)
    # Every file is checked before anything heavy is built; each error names its file and field.
    config = EmberVLMConfig.load(directory)
    processor_matches_model(ProcessorConfig.load(directory), config, directory / PROCESSOR_FILE)
    if fleet is None:
        fleet = saved_fleet(directory)
        if fleet.ids != config.robot_ids:
            raise ValueError(f"{directory / FLEET_FILE}: robots {fleet.ids} are not the head's rows "
                             f"{config.robot_ids} of {directory / CONFIG_FILE}; re-save the model, or pass the "
                             f"fleet to use (--robots)")
    safetensors_header(directory / WEIGHTS_FILE)
    tokenizer = load_saved_tokenizer(directory)
    vlm = EmberVLM.from_pretrained(directory, tokenizer, robot_ids=fleet.ids)
    processor = EmberProcessor.from_pretrained(directory, fleet, _task_tokenizer(vlm))
    return _paired(vlm, processor)


def save_pretrained(model: EmberVLM, processor: EmberProcessor, directory: str | os.PathLike,
                    dtype: torch.dtype = torch.float32) -> Path:
    """Write the model and its processor into `directory`, replacing it atomically."""
    with atomic_directory(directory) as staging:
        write_pretrained(model, processor, staging, dtype)
    return Path(directory)


def write_pretrained(model: EmberVLM, processor: EmberProcessor, directory: Path,
                     dtype: torch.dtype = torch.float32) -> None:
    """The files of a saved model, written into an existing (staging) directory."""
    if model.config.robot_ids != processor.fleet.ids:
        raise ValueError(f"the model's head is laid out for {model.config.robot_ids}, the processor's fleet is "
                         f"{processor.fleet.ids}")
    model.save_pretrained(directory, dtype)
    processor.save_pretrained(directory)


def _task_tokenizer(model: EmberVLM):
    return None if model.text_encoder is None else model.text_encoder.tokenizer


def _paired(model: EmberVLM, processor: EmberProcessor) -> tuple[EmberVLM, EmberProcessor]:
    """Give the model the processor's fleet cards (their token ids), the last step of building or loading."""
    model.set_cards(processor.card_inputs())
    return model, processor
