"""Turning the image inputs users pass (PIL image, numpy array, file path) into model-ready tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ember_core.errors import InvalidInputError

# RepViT is trained on ImageNet with timm's default normalisation.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike, None]



def to_rgb(image: ImageInput) -> Image.Image | None:
    """A PIL RGB image from a PIL image, an HxW / HxWx{1,3,4} uint8 array, or an image file path."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB")
        except FileNotFoundError as err:
            raise InvalidInputError(f"image file {path} does not exist") from err
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise InvalidInputError(f"image file {path} is not a readable image ({err})") from err
    raise InvalidInputError(f"unsupported image type {type(image).__name__}; pass a PIL image, a numpy array or a path")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise InvalidInputError(f"image array must be uint8 (HxWx3, RGB), got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return Image.fromarray(array).convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4) and min(array.shape[:2]) > 0:
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))
    raise InvalidInputError(f"image array must be HxW or HxWx3 (RGB) uint8, got shape {tuple(array.shape)}")


def to_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """(3, size, size) float tensor: resized with bilinear filtering, ImageNet-normalised."""
    resized = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())
