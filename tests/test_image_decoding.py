"""ember_ros.image_decoding: real sensor_msgs messages decoded to exact RGB arrays, and bad messages refused."""
from __future__ import annotations

import array
import io
import struct
import zlib

import numpy as np
import pytest

msgs = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 sensor_msgs is not installed (pip install '.[ros]')")
from PIL import Image as PILImage  # noqa: E402

from ember_core import limits  # noqa: E402
from ember_core.errors import InvalidInputError  # noqa: E402
from ember_ros.image_decoding import SUPPORTED_ENCODINGS, decode_compressed, decode_image  # noqa: E402

H, W = 3, 4
# Every pixel and channel distinct, so a swapped channel, a transposed axis or a shifted row all change the result.
RGB = (np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3) * 7 + 1).astype(np.uint8)
GREY = (np.arange(H * W, dtype=np.uint8).reshape(H, W) * 19 + 3).astype(np.uint8)


def raw(encoding: str, pixels: np.ndarray, *, pad: int = 0, bigendian: bool = False, data=None) -> msgs.Image:
    """A sensor_msgs/Image of `pixels` (HxWxC bytes) with `pad` garbage bytes at the end of each row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    garbage = np.full((height, pad), 0xEE, dtype=np.uint8)
    msg = msgs.Image()
    msg.encoding, msg.height, msg.width = encoding, height, width
    msg.step = rows.shape[1] + pad
    msg.is_bigendian = int(bigendian)
    msg.data = np.concatenate([rows, garbage], axis=1).tobytes() if data is None else data
    return msg


def with_alpha(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 0x5A, dtype=np.uint8)], axis=2)


COLOUR_CASES = {
    "rgb8": RGB,
    "bgr8": RGB[:, :, ::-1],
    "rgba8": with_alpha(RGB),
    "bgra8": with_alpha(RGB[:, :, ::-1]),
    "8UC3": RGB[:, :, ::-1],
}


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", list(COLOUR_CASES))
def test_colour_encodings_decode_exactly(encoding, pad):
    decoded = decode_image(raw(encoding, COLOUR_CASES[encoding], pad=pad))
    assert decoded.dtype == np.uint8 and decoded.shape == (H, W, 3)
    np.testing.assert_array_equal(decoded, RGB)
    assert 0xEE not in decoded and 0x5A not in decoded  # neither row padding nor alpha leaks


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_is_grey_in_all_three_channels(encoding, pad):
    decoded = decode_image(raw(encoding, GREY[:, :, None], pad=pad))
    np.testing.assert_array_equal(decoded, np.repeat(GREY[:, :, None], 3, axis=2))


@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_mono16_keeps_the_high_byte(encoding, bigendian, pad):
    values = (GREY.astype(np.uint16) << 8) | 0x34  # low byte 0x34 must vanish: 0x1234 -> 0x12
    values[0, 0] = 0x1234
    as_bytes = values.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(H, W, 2)
    decoded = decode_image(raw(encoding, as_bytes, pad=pad, bigendian=bigendian))
    assert decoded[0, 0].tolist() == [0x12, 0x12, 0x12]
    expected = GREY.copy()
    expected[0, 0] = 0x12
    np.testing.assert_array_equal(decoded, np.repeat(expected[:, :, None], 3, axis=2))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "list", "message_array"])
def test_data_container_types(kind):
    payload = RGB.tobytes()
    data = {"bytes": payload, "bytearray": bytearray(payload), "array": array.array("B", payload),
            "list": list(payload), "message_array": None}[kind]
    msg = raw("rgb8", RGB)
    if data is not None:
        msg = _Duck(msg, data=data)  # rclpy stores data as array.array; plain objects may hold anything
    np.testing.assert_array_equal(decode_image(msg), RGB)


def test_result_owns_its_memory():
    msg = raw("rgb8", RGB)
    decoded = decode_image(msg)
    assert decoded.flags.writeable and decoded.flags.c_contiguous and decoded.base is None
    decoded[:] = 0
    assert bytes(msg.data) == RGB.tobytes()
    msg.data.append(1)  # would raise BufferError if a numpy view still held the message's buffer


def test_extra_data_past_the_last_row_is_ignored():
    msg = raw("bgr8", RGB[:, :, ::-1], data=RGB[:, :, ::-1].tobytes() + b"\xee" * 7)
    np.testing.assert_array_equal(decode_image(msg), RGB)


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "RGB8", ""])
def test_unknown_encoding_lists_the_supported_ones(encoding):
    with pytest.raises(InvalidInputError, match="Image.encoding") as caught:
        decode_image(raw(encoding, RGB))
    assert all(name in str(caught.value) for name in SUPPORTED_ENCODINGS)


def test_short_data_is_refused():
    msg = raw("rgb8", RGB, pad=2)
    msg.data = bytes(msg.data)[:-1]  # the last row's padding is missing, still counts as short
    with pytest.raises(InvalidInputError, match="Image.data has"):
        decode_image(msg)


def test_step_smaller_than_a_row_is_refused():
    msg = raw("rgb8", RGB)
    msg.step = W * 3 - 1
    with pytest.raises(InvalidInputError, match="Image.step"):
        decode_image(msg)


@pytest.mark.parametrize("height, width", [(0, W), (H, 0), (0, 0)])
def test_zero_size_is_refused(height, width):
    msg = raw("rgb8", RGB)
    msg.height, msg.width = height, width
    with pytest.raises(InvalidInputError, match="at least 1"):
        decode_image(msg)


def test_data_that_is_not_bytes_is_refused():
    with pytest.raises(InvalidInputError, match="Image.data"):
        decode_image(_Duck(raw("rgb8", RGB), data=[300] * RGB.size))


def compressed(fmt: str, pixels: np.ndarray, **save) -> msgs.CompressedImage:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt, **save)
    msg = msgs.CompressedImage()
    msg.format, msg.data = fmt.lower(), buffer.getvalue()
    return msg


def test_png_round_trip_is_exact():
    decoded = decode_compressed(compressed("PNG", RGB))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, RGB)


def test_png_grey_and_rgba_become_rgb():
    np.testing.assert_array_equal(decode_compressed(compressed("PNG", GREY)), np.repeat(GREY[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(decode_compressed(compressed("PNG", with_alpha(RGB))), RGB)


def test_jpeg_round_trip_is_close():
    # A smooth gradient: JPEG is lossy, and on the tiny noisy pattern it would blur whole blocks.
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.stack([x * 5, y * 7, (x + y) * 3], axis=2).astype(np.uint8)
    decoded = decode_compressed(compressed("JPEG", smooth, quality=95, subsampling=0))
    assert decoded.shape == (32, 48, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - smooth).max() <= 12
    assert np.abs(decoded.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize("data", [b"not an image at all", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_compressed_data_is_refused(data):
    msg = msgs.CompressedImage()
    msg.format, msg.data = "png", data
    with pytest.raises(InvalidInputError, match="CompressedImage"):
        decode_compressed(msg)


def test_truncated_jpeg_is_refused():
    msg = compressed("JPEG", RGB)
    msg.data = bytes(msg.data)[: len(msg.data) // 2]
    with pytest.raises(InvalidInputError, match="not a readable image"):
        decode_compressed(msg)


def test_too_many_pixels_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", H * W - 1)
    with pytest.raises(InvalidInputError, match="pixel limit"):
        decode_compressed(compressed("PNG", RGB))
    with pytest.raises(InvalidInputError, match="pixel limit"):
        decode_image(raw("rgb8", RGB))
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", H * W)
    np.testing.assert_array_equal(decode_compressed(compressed("PNG", RGB)), RGB)
    np.testing.assert_array_equal(decode_image(raw("rgb8", RGB)), RGB)


def test_raw_frame_claiming_more_pixels_than_the_limit_is_refused_before_its_data_is_read():
    msg = raw("rgb8", RGB)
    msg.width = msg.height = 100_000
    msg.step = 300_000
    msg.data = b""  # a check of data against step x height would have said "Image.data has 0 bytes"
    with pytest.raises(InvalidInputError, match="100000x100000 = 10,000,000,000 pixels, over the"):
        decode_image(msg)


def test_compressed_data_over_the_byte_limit_is_refused_before_decoding(monkeypatch):
    msg = compressed("PNG", RGB)
    monkeypatch.setattr(limits, "MAX_IMAGE_BYTES", len(msg.data) - 1)
    with pytest.raises(InvalidInputError, match=f"{len(msg.data)} bytes .*over the {len(msg.data) - 1} byte limit"):
        decode_compressed(msg)


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM", "TGA"])
def test_formats_outside_the_allowlist_are_refused(fmt):
    """Pillow reads these; Ember accepts only limits.IMAGE_FORMATS."""
    with pytest.raises(InvalidInputError, match="is not a JPEG, PNG, WEBP, BMP or TIFF image"):
        decode_compressed(compressed(fmt, RGB))


@pytest.mark.parametrize("fmt", [fmt for fmt in limits.IMAGE_FORMATS])
def test_every_allowed_format_decodes(fmt):
    decoded = decode_compressed(compressed(fmt, RGB, **({"quality": 100} if fmt in ("JPEG", "WEBP") else {})))
    assert decoded.shape == (H, W, 3) and decoded.dtype == np.uint8
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless
        np.testing.assert_array_equal(decoded, RGB)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but carries no pixel data: a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(10_000, 6_000), (20_000, 20_000)])
def test_huge_header_is_refused_without_decoding(width, height):
    # 60M pixels is under Pillow's own bomb limit, so only MAX_IMAGE_PIXELS stops it; 400M trips Pillow's check in open().
    msg = msgs.CompressedImage()
    msg.format, msg.data = "png", png_header_only(width, height)
    with pytest.raises(InvalidInputError, match="pixel limit"):
        decode_compressed(msg)


class _Duck:
    """The message's fields with `data` replaced, as a duck-typed stand-in for an Image."""

    def __init__(self, msg, data):
        for field in ("encoding", "height", "width", "step", "is_bigendian"):
            setattr(self, field, getattr(msg, field))
        self.data = data
