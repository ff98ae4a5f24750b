"""Image files for data-loader tests: small real PNG/JPEG files, a corrupt one, and a processor to read them."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ember_core.model.tokenizer import load_tokenizer
from ember_core.processor import EmberProcessor, ProcessorConfig

IMAGE_TOKENS = 4


def tiny_processor(fleet) -> EmberProcessor:
    """A processor with 32 px images and 4 image slots (no model needed)."""
    return EmberProcessor(ProcessorConfig(image_size=32, image_tokens=IMAGE_TOKENS, max_task_chars=200,
                                          max_prompt_tokens=1000), load_tokenizer(), fleet)


def write_image(path: Path, colour: tuple[int, int, int]) -> Path:
    """A 40x30 image of one colour, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)
    return path


def write_corrupt(path: Path) -> Path:
    """A file named like an image that holds no image: a JPEG header, then garbage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"not an image" * 8)
    return path


def black_pixels(processor: EmberProcessor) -> torch.Tensor:
    """What a black image of the processor's size looks like after its transform."""
    return processor.pixels(Image.new("RGB", (32, 32)))
