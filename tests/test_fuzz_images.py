"""Fuzzing image inputs (bytes, files, arrays, ROS frames): the answer is an RGB image within the limits or an InvalidInputError.

The corpus in tests/data/fuzz/images/ (written by tools/make_fuzz_corpus_images.py) holds the files that
crashed a decoder or could exhaust memory; the properties generate many more of the same kinds.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import REPO
from ember_core import limits
from ember_core.errors import InvalidInputError
from ember_core.images import to_rgb
from ember_ros.image_decoding import decode_compressed

CORPUS = REPO / "tests" / "data" / "fuzz" / "images"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
try:
    from sensor_msgs.msg import CompressedImage, Image as RawImage
except ImportError:  # ROS is optional: a stand-in with the same two fields
    CompressedImage, RawImage = None, None


def compressed(data: bytes, fmt: str = "png"):
    if CompressedImage is None:
        return SimpleNamespace(format=fmt, data=data)
    return CompressedImage(format=fmt, data=data)


def check_rgb_or_invalid(decode, value) -> Image.Image | np.ndarray | None:
    """The property every image entry point keeps: an RGB result within the pixel limit, or InvalidInputError."""
    try:
        result = decode(value)
    except InvalidInputError as err:
        assert str(err), "an InvalidInputError must say what is wrong"
        return None
    if isinstance(result, np.ndarray):
        assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
        assert 0 < result.shape[0] * result.shape[1] <= limits.MAX_IMAGE_PIXELS
    else:
        assert result.mode == "RGB" and 0 < result.width * result.height <= limits.MAX_IMAGE_PIXELS
    return result


# ---- the corpus --------------------------------------------------------------------------------

def test_the_corpus_is_small_and_every_file_has_an_expectation():
    files = {path.name for path in CORPUS.iterdir() if path.name != "expected.json"}
    assert files == set(EXPECTED), "rerun tools/make_fuzz_corpus_images.py"
    assert max((CORPUS / name).stat().st_size for name in files) < 8 * 1024


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_refused_with_a_reason_or_decodes_within_the_limits(name):
    data, expected = (CORPUS / name).read_bytes(), EXPECTED[name]
    for source, decode, value in (("image file", to_rgb, str(CORPUS / name)), ("image bytes", to_rgb, data),
                                  ("CompressedImage", decode_compressed, compressed(data))):
        if expected == "decodes":
            assert check_rgb_or_invalid(decode, value) is not None, f"{source} {name} should decode"
            continue
        with pytest.raises(InvalidInputError) as caught:
            decode(value)
        assert expected in str(caught.value) and source in str(caught.value), str(caught.value)


BOMB_MEMORY = """
import gc, sys
from ember_core.images import to_rgb
from ember_ros.image_decoding import decode_compressed
from types import SimpleNamespace
data = open(sys.argv[1], "rb").read()
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
for name, decode in (("to_rgb", lambda: to_rgb(data)),
                     ("decode_compressed", lambda: decode_compressed(SimpleNamespace(format="png", data=data)))):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak (VmHWM) to the current RSS
    before = status("VmRSS:")
    result = decode()
    print(name, status("VmHWM:") - before, flush=True)
    del result
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_a_zlib_bomb_at_the_pixel_limit_costs_only_its_pixels():
    """6 KB of PNG inflating to twice its rows: the surplus is never inflated, the pixels are bounded by the limit.

    Measured: ~5 bytes per pixel through to_rgb (the 1-bit image, then RGB at 4 bytes a pixel) and ~10
    through decode_compressed (plus the RGB array and Pillow's bytes copy of it): ~120 and ~240 MiB.
    """
    bomb = CORPUS / "png_zlib_bomb_at_pixel_limit.png"
    run = subprocess.run([sys.executable, "-c", BOMB_MEMORY, str(bomb)], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    growth = {name: int(value) for name, value in (line.split() for line in run.stdout.splitlines())}
    with Image.open(bomb) as image:
        pixels = image.width * image.height
    assert pixels <= limits.MAX_IMAGE_PIXELS
    for name, grown in growth.items():
        assert grown < 12 * pixels, f"{name} grew {grown / 2**20:.0f} MiB for {pixels:,} pixels"


# ---- paths that are not regular files ------------------------------------------------------------

def _returns_within(call, seconds: float = 5.0):
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(call)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds:g} s (opened for reading?)"
    return outcome[0]


def _outcome(call):
    try:
        return call()
    except Exception as err:  # noqa: BLE001 - returned for the test to inspect
        return err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_paths_are_refused_at_once_without_being_read(tmp_path):
    os.mkfifo(tmp_path / "camera.png")  # opening a FIFO for reading waits for a writer: forever
    os.symlink("/dev/zero", tmp_path / "endless.png")  # reading it never ends
    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as file:
        file.truncate(limits.MAX_IMAGE_BYTES + 1)
    cases = {tmp_path / "camera.png": "is a FIFO", tmp_path / "endless.png": "is a device", tmp_path: "is a directory",
             sparse: f"over the {limits.MAX_IMAGE_BYTES:,} byte limit", "bad\x00name.png": "cannot be read"}
    for path, message in cases.items():
        error = _returns_within(lambda: to_rgb(path))
        assert isinstance(error, InvalidInputError) and message in str(error), (path, error)


# ---- generated bytes -----------------------------------------------------------------------------

def _saved(fmt: str, mode: str = "RGB", size: tuple[int, int] = (12, 9), **options) -> bytes:
    buffer = io.BytesIO()
    pixels = (np.arange(size[0] * size[1] * 3, dtype=np.uint8).reshape(size[1], size[0], 3) * 37).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt, **options)
    return buffer.getvalue()


REAL = [_saved("PNG"), _saved("PNG", "L"), _saved("PNG", "RGBA"), _saved("PNG", "P"), _saved("PNG", "I;16"),
        _saved("JPEG"), _saved("JPEG", "L"), _saved("JPEG", "CMYK"), _saved("JPEG", progressive=True),
        _saved("WEBP"), _saved("WEBP", lossless=True), _saved("BMP"), _saved("BMP", "P"), _saved("TIFF"),
        _saved("TIFF", compression="tiff_deflate"), _saved("TIFF", "F"), _saved("TIFF", "1"), _saved("GIF")]
# Magic numbers of formats Pillow knows (most of them not allowed), to steer generated bytes into their parsers.
MAGIC = [b"DDS \x7c\x00\x00\x00", b"BLP1", b"BLP2", b"GIF89a", b"\x00\x00\x01\x00", b"8BPS\x00\x01", b"\x0a\x05\x01\x08",
         b"%!PS-Adobe-3.0 EPSF", b"\x00\x00\x00\x0cjP  ", b"FORM\x00\x00\x00\x00ILBM", b"P6\n", b"icns", b"\x59\xa6\x6a\x95",
         b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBPVP8X", b"BM",
         b"\x01\xda\x01\x01", b"qoif", b"#define im_width", b"\x00\x00\x02\x00", b"SIMPLE  =", b"FLI\x00"]


def _png_of_size(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _bmp_of_size(width: int, height: int, bits: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + b"\x7f" * 64


def _jpeg_of_size(width: int, height: int) -> bytes:
    data = bytearray(_saved("JPEG", size=(8, 8)))
    at = data.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), then height and width
    data[at:at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


SIDE = st.one_of(st.integers(0, 70), st.integers(0, 2**16 - 1), st.integers(0, 2**31 - 1),
                 st.sampled_from([5000, 5001, limits.MAX_IMAGE_PIXELS, limits.MAX_IMAGE_PIXELS + 1]))
DECLARED_SIZE = st.one_of(
    st.builds(_png_of_size, SIDE, SIDE, st.sampled_from([1, 8, 16]), st.sampled_from([0, 2, 3, 6]), st.binary(max_size=64)),
    st.builds(_bmp_of_size, SIDE.map(lambda n: min(n, 2**31 - 1)), st.integers(-2**31, 2**31 - 1),
              st.sampled_from([1, 4, 8, 24, 32])),
    st.builds(_jpeg_of_size, SIDE.map(lambda n: n % 2**16), SIDE.map(lambda n: n % 2**16)))
MUTATED = st.builds(
    lambda data, cut, flips: bytes(b ^ flips.get(i, 0) for i, b in enumerate(data[:max(cut, 1)])),
    st.sampled_from(REAL), st.integers(0, 4096), st.dictionaries(st.integers(0, 4095), st.integers(1, 255), max_size=6))
OTHER_HEADERS = st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC), st.binary(max_size=512))
IMAGE_BYTES = st.one_of(st.binary(max_size=2048), MUTATED, OTHER_HEADERS, DECLARED_SIZE)


@given(IMAGE_BYTES)
@example(b"DDS \x7c\x00\x00\x00" + b"\x00" * 72 + struct.pack("<II4s", 32, 4, b"ABCD") + b"\x00" * 60)
def test_any_bytes_give_an_rgb_image_within_the_limits_or_invalid_input(data):
    from_bytes = check_rgb_or_invalid(to_rgb, data)
    from_message = check_rgb_or_invalid(decode_compressed, compressed(data))
    assert (from_bytes is None) == (from_message is None)
    if from_bytes is not None:
        np.testing.assert_array_equal(np.asarray(from_bytes), from_message)


@given(IMAGE_BYTES)
def test_any_file_gives_what_its_bytes_give(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzzed.img"
    path.write_bytes(data)
    from_file, from_bytes = check_rgb_or_invalid(to_rgb, path), check_rgb_or_invalid(to_rgb, data)
    assert (from_file is None) == (from_bytes is None)


# ---- generated arrays ----------------------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
ARRAYS = st.one_of(
    hnp.arrays(st.one_of(st.just(np.dtype(np.uint8)), hnp.scalar_dtypes()), SHAPES),
    hnp.arrays(np.uint8, st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 6))),
    # Huge shapes that cost nothing: every element is the same byte (zero strides).
    st.builds(lambda shape: np.broadcast_to(np.zeros(1, np.uint8), shape),
              st.tuples(SIDE.map(lambda n: n % 200_000), SIDE.map(lambda n: n % 200_000))
              | st.tuples(SIDE.map(lambda n: n % 200_000), SIDE.map(lambda n: n % 200_000), st.sampled_from([1, 3, 4]))))


@given(ARRAYS)
@example(np.broadcast_to(np.zeros(1, np.uint8), (100_000, 100_000, 3)))
@example(np.zeros((0, 5), np.uint8))
def test_any_array_gives_an_rgb_image_of_its_size_or_invalid_input(array):
    image = check_rgb_or_invalid(to_rgb, array)
    if image is not None:
        assert image.size == (array.shape[1], array.shape[0])
        np.testing.assert_array_equal(np.asarray(image)[..., 0], array[..., 0] if array.ndim == 3 else array)


# ---- generated raw frames ------------------------------------------------------------------------

UINT32 = st.one_of(st.integers(0, 16), st.integers(0, 2**32 - 1), st.sampled_from([5000, 5001, 2**31, 2**32 - 1]))
ENCODINGS = st.one_of(st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC3", "8UC1", "16UC1"]),
                      st.text(max_size=12))


@pytest.mark.skipif(RawImage is None, reason="ROS 2 sensor_msgs is not installed")
@given(ENCODINGS, UINT32, UINT32, UINT32, st.booleans(), st.binary(max_size=1024), st.booleans())
def test_any_raw_frame_gives_an_rgb_array_or_invalid_input(encoding, height, width, step, bigendian, data, fill):
    from ember_ros.image_decoding import decode_image

    if fill and 0 < step * height <= 4096:
        data = (data * (step * height // max(len(data), 1) + 1))[: step * height] if data else bytes(step * height)
    message = RawImage(encoding=encoding, height=height, width=width, step=step, is_bigendian=int(bigendian), data=data)
    result = check_rgb_or_invalid(decode_image, message)
    if result is not None:
        assert result.shape == (height, width, 3)
