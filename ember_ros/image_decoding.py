"""Camera messages to RGB numpy arrays without cv_bridge: raw sensor_msgs/Image by encoding, CompressedImage through Pillow."""
from __future__ import annotations

from typing import Any

import numpy as np

from ember_core import limits
from ember_core.errors import InvalidInputError
from ember_core.images import check_pixels, decode_bytes

# encoding -> (bytes per pixel, which of a pixel's bytes are R, G, B); slices keep every step a numpy view.
# mono16 has None: its byte (the high one) depends on is_bigendian.
_LAYOUTS: dict[str, tuple[int, slice | None]] = {
    "rgb8": (3, slice(0, 3)),
    "bgr8": (3, slice(2, None, -1)),
    "rgba8": (4, slice(0, 3)),
    "bgra8": (4, slice(2, None, -1)),
    "mono8": (1, slice(0, 1)),
    "mono16": (2, None),
}
# OpenCV-style names that cameras publish for the same layouts (cv_bridge reads 8UC3 as bgr8 too).
_ALIASES = {"8UC3": "bgr8", "8UC1": "mono8", "16UC1": "mono16"}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS) + tuple(_ALIASES)


def decode_image(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB array from a sensor_msgs/Image; the array owns its memory (never aliases msg.data).

    Encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8, mono16 (grey copied to R, G and B),
    and the aliases 8UC3 = bgr8, 8UC1 = mono8, 16UC1 = mono16. Padding past width in each `step`-byte
    row is dropped. mono16 keeps the high byte (value >> 8, byte order from is_bigendian): a fixed linear
    map of the full 16-bit range, so the same depth or intensity gives the same grey in every frame,
    which a per-frame min-max stretch would not.
    Raises InvalidInputError for an unsupported encoding, an empty image, more than limits.MAX_IMAGE_PIXELS
    pixels (checked before any array is built), a too-small step or short data.
    """
    encoding = str(msg.encoding)
    layout = _LAYOUTS.get(_ALIASES.get(encoding, encoding))
    if layout is None:
        raise InvalidInputError(
            f"Image.encoding {encoding[:40]!r} is not supported; publish one of {', '.join(SUPPORTED_ENCODINGS)} "
            "or a sensor_msgs/CompressedImage")
    pixel_bytes, picks = layout
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_pixels(width, height, f"Image ({encoding})")
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise InvalidInputError(
            f"Image.step {step} is smaller than a row of {width} {encoding} pixels ({row_bytes} bytes); "
            "set step to the row length in bytes, padding included")
    flat = _byte_view(msg.data)
    if flat.size < step * height:
        raise InvalidInputError(
            f"Image.data has {flat.size} bytes but step x height is {step} x {height} = {step * height}; "
            "send the whole frame or fix step/height")
    pixels = flat[: step * height].reshape(height, step)[:, :row_bytes].reshape(height, width, pixel_bytes)
    if picks is None:
        high = 0 if msg.is_bigendian else 1
        picks = slice(high, high + 1)
    rgb = np.broadcast_to(pixels[:, :, picks], (height, width, 3))
    # The one copy: until here everything is a view of msg.data, which may be read-only bytes
    # or an array.array the message still owns (np.ascontiguousarray would skip the copy for rgb8).
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def decode_compressed(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB array from a sensor_msgs/CompressedImage in one of limits.IMAGE_FORMATS (JPEG, PNG, ...).

    The format field is only used in error messages: the data is recognised by its contents. Raises
    InvalidInputError for data over limits.MAX_IMAGE_BYTES (checked before it is copied), in another
    format, over limits.MAX_IMAGE_PIXELS (read from the header, before decoding) or unreadable.
    """
    fmt = str(getattr(msg, "format", ""))[:40] or "unset"
    try:
        size = len(msg.data)
        data = bytes(msg.data) if size <= limits.MAX_IMAGE_BYTES else b""
    except (TypeError, ValueError) as err:
        raise InvalidInputError(
            f"CompressedImage.data is not a byte sequence ({err}); fill it with the encoded image") from err
    if size > limits.MAX_IMAGE_BYTES:  # refused before the copy
        raise InvalidInputError(f"CompressedImage is {size:,} bytes (format {fmt!r}), over the "
                                f"{limits.MAX_IMAGE_BYTES:,} byte limit; publish a smaller or more compressed image")
    if not data:
        raise InvalidInputError(f"CompressedImage.data is empty (format {fmt!r}); send the encoded image bytes")
    return np.array(decode_bytes(data, f"CompressedImage (format {fmt!r})"), dtype=np.uint8)


def _byte_view(data: Any) -> np.ndarray:
    """A flat uint8 view of bytes, bytearray or array.array without copying; a list of ints is copied once."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        pass  # not a contiguous buffer (a list, say): fall through to bytes()
    try:
        return np.frombuffer(bytes(data), dtype=np.uint8)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(
            f"Image.data is not a byte sequence ({type(data).__name__}: {err}); pass bytes or ints 0-255") from err
