"""Turning the image inputs users pass (PIL image, numpy array, file path, encoded bytes) into checked RGB images and pixels.

Everything from outside is checked against ember_core.limits before a decoder runs: the byte size,
the format (an allowlist; Pillow would otherwise try ~40 formats, some with fragile parsers) and the
pixel count read from the header. Whatever a decoder then raises becomes an InvalidInputError.
"""
from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ember_core import limits
from ember_core.errors import InvalidInputError

# RepViT is trained on ImageNet with timm's default normalisation.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ImageInput = Union[Image.Image, np.ndarray, bytes, bytearray, str, os.PathLike, None]


def to_rgb(image: ImageInput) -> Image.Image | None:
    """A PIL RGB image from a PIL image, an HxW / HxWx{1,3,4} uint8 array, encoded image bytes or an image file path.

    Raises InvalidInputError for anything else, for more than limits.MAX_IMAGE_PIXELS pixels, for
    files or bytes over limits.MAX_IMAGE_BYTES or in a format outside limits.IMAGE_FORMATS, for a path
    that is not a regular file, and for data the decoder cannot read.
    """
    if image is None:
        return None
    if isinstance(image, Image.Image):
        check_pixels(image.width, image.height, "image")
        return _decoded("image", image.convert, "RGB")  # a lazily opened image decodes here
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (bytes, bytearray)):
        return decode_bytes(bytes(image), "image bytes")
    if isinstance(image, (str, os.PathLike)):
        try:
            path = Path(image)
        except TypeError as err:  # an os.PathLike whose __fspath__ gives bytes
            raise InvalidInputError(f"image path {image!r} is not a text path ({err}); pass a str or pathlib.Path") from err
        return decode_bytes(read_image_file(path), f"image file {path}")
    raise InvalidInputError(f"unsupported image type {type(image).__name__}; "
                            "pass a PIL image, a numpy array, encoded image bytes or a path")


def check_pixels(width: int, height: int, source: str) -> None:
    """Refuse an empty image or one over limits.MAX_IMAGE_PIXELS, from its declared size (before decoding)."""
    if width < 1 or height < 1:
        raise InvalidInputError(f"{source} is {width}x{height} (width x height); both must be at least 1")
    if width * height > limits.MAX_IMAGE_PIXELS:
        raise InvalidInputError(f"{source} is {width}x{height} = {width * height:,} pixels, over the "
                                f"{limits.MAX_IMAGE_PIXELS:,} pixel limit; send a smaller image")


def read_image_file(path: Path) -> bytes:
    """The bytes of a regular file of at most limits.MAX_IMAGE_BYTES; a FIFO, device or directory is refused unopened."""
    try:
        info = os.stat(path)
    except FileNotFoundError as err:
        raise InvalidInputError(f"image file {path} does not exist") from err
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise InvalidInputError(f"image file {path} cannot be read ({err}); pass the path of an image file") from err
    _check_regular_file(path, info.st_mode, info.st_size)
    try:
        # O_NONBLOCK: if a FIFO replaced the file since stat, opening it must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise InvalidInputError(f"image file {path} cannot be opened ({err}); check its permissions") from err
    with os.fdopen(fd, "rb") as file:
        opened = os.fstat(file.fileno())
        _check_regular_file(path, opened.st_mode, opened.st_size)  # the file we opened, not the one we stat'ed
        try:
            data = file.read(limits.MAX_IMAGE_BYTES + 1)
        except OSError as err:
            raise InvalidInputError(f"image file {path} cannot be read ({err})") from err
    if len(data) > limits.MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image file {path} grew past the {limits.MAX_IMAGE_BYTES:,} byte limit while being read")
    return data


def decode_bytes(data: bytes, source: str) -> Image.Image:
    """An RGB image from encoded bytes in one of limits.IMAGE_FORMATS; `source` names the input in errors.

    Size, format and pixel count are checked before any pixel is decoded. A zlib bomb within the
    pixel limit costs only its pixels: Pillow's decoders stop at the last row of the declared size.
    """
    if len(data) > limits.MAX_IMAGE_BYTES:
        raise InvalidInputError(f"{source} is {len(data):,} bytes, over the {limits.MAX_IMAGE_BYTES:,} byte limit; "
                                "send a smaller or more compressed image")
    if not data:
        raise InvalidInputError(f"{source} is empty; send the encoded image bytes")
    try:
        with Image.open(io.BytesIO(data), formats=limits.IMAGE_FORMATS) as image:
            check_pixels(image.width, image.height, source)  # Image.open read only the header
            return image.convert("RGB")
    except InvalidInputError:
        raise
    except UnidentifiedImageError as err:
        looks_like = _allowed_format_of(data[:16])
        if looks_like:  # an allowed format's magic number, and then a header its parser refused
            raise InvalidInputError(f"{source} is not a readable image: it starts like a {looks_like} file but its "
                                    f"header is broken ({len(data):,} bytes); send an intact image file") from err
        raise InvalidInputError(f"{source} {_formats_text()} ({len(data):,} bytes); convert it first") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InvalidInputError(f"{source} declares more pixels than the {limits.MAX_IMAGE_PIXELS:,} pixel limit "
                                f"({_brief(err)}); send a smaller image") from err
    except Exception as err:  # noqa: BLE001 - see _decoded: any decoder failure means unreadable bytes
        raise InvalidInputError(f"{source} is not a readable image ({type(err).__name__}: {_brief(err)}; "
                                f"{len(data):,} bytes); send an intact image file") from err


def _allowed_format_of(prefix: bytes) -> str | None:
    """The allowed format whose magic number `prefix` starts with (Pillow's own cheap prefix checks), if any."""
    for name in limits.IMAGE_FORMATS:
        registered = Image.OPEN.get(name)
        accept = registered[1] if registered else None
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # noqa: BLE001 - a prefix check that fails is a no
            continue
    return None


def _formats_text() -> str:
    names = limits.IMAGE_FORMATS
    return "is not a " + ", ".join(names[:-1]) + f" or {names[-1]} image" if len(names) > 1 else f"is not a {names[0]} image"


def _check_regular_file(path: Path, mode: int, size: int) -> None:
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
                "not a regular file")
        raise InvalidInputError(f"image path {path} is {kind}; pass the path of a regular image file")
    if size > limits.MAX_IMAGE_BYTES:
        raise InvalidInputError(f"image file {path} is {size:,} bytes, over the {limits.MAX_IMAGE_BYTES:,} byte limit; "
                                "pass a smaller or more compressed image")


def _decoded(source: str, convert, *args) -> Image.Image:
    """Run a Pillow call that decodes pixels. Its plugins raise whatever their parsers hit (OSError,
    ValueError, SyntaxError, struct.error, EOFError, zlib.error, NotImplementedError, AttributeError,
    IndexError ...): each means the data is unreadable, so each becomes an InvalidInputError."""
    try:
        return convert(*args)
    except Exception as err:  # noqa: BLE001
        raise InvalidInputError(f"{source} is not a readable image ({type(err).__name__}: {_brief(err)})") from err


def _brief(err: BaseException, limit: int = 200) -> str:
    text = str(err)
    return text if len(text) <= limit else text[:limit] + "..."


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise InvalidInputError(f"image array must be uint8 (HxWx3, RGB), got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        check_pixels(array.shape[1], array.shape[0], "image array")  # before any copy: strides may fake the size
        if array.ndim == 2:
            return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))
    raise InvalidInputError(f"image array must be HxW or HxWx3 (RGB) uint8, got shape {tuple(array.shape)}")


def to_pixels(image: Image.Image, size: int) -> np.ndarray:
    """(3, size, size) float32 array: resized with bilinear filtering, ImageNet-normalised (numpy, for either backend)."""
    resized = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
