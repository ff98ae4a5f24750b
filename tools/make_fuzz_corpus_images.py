"""Write tests/data/fuzz/images/: small image files that once crashed or could exhaust a decoder, with what each must give.

`python tools/make_fuzz_corpus_images.py` rewrites the directory (the files and expected.json);
tests/test_fuzz_images.py reads them. Every file is a few KB at most: the bombs claim their size, they
do not carry it. `expected.json` maps a file name to the fragment its InvalidInputError must carry, or
to "decodes" for a file that is within the limits and must decode.
"""
from __future__ import annotations

import io
import json
import math
import struct
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout, before or without `pip install -e .`

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ember_core import limits  # noqa: E402

OUT = REPO / "tests" / "data" / "fuzz" / "images"
NOT_ALLOWED = "is not a " + ", ".join(limits.IMAGE_FORMATS[:-1]) + f" or {limits.IMAGE_FORMATS[-1]} image"
OVER_PIXELS = "pixel limit"
UNREADABLE = "not a readable image"
DECODES = "decodes"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 2, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + extra + (_png_chunk(b"IDAT", idat) if idat else b"")
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


def _saved(fmt: str, size: tuple[int, int] = (64, 48), **options) -> bytes:
    y, x = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def dds_unimplemented_fourcc() -> bytes:
    """A DirectDraw Surface with an unknown FourCC: Pillow's DDS plugin raises NotImplementedError."""
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"ABCD", 0, 0, 0, 0, 0)  # size, DDPF_FOURCC, fourcc, masks
    header = struct.pack("<7I", 124, 0x1007, 4, 4, 16, 0, 0) + b"\0" * 44 + pixel_format + b"\0" * 20
    return b"DDS " + header + b"\0" * 64


def spider_stack_without_offset() -> bytes:
    """A SPIDER header (no magic number: any 27 floats that look right) naming image 1 of no stack: AttributeError."""
    values = [0.0] * 27
    for index, value in {1: 1, 2: 8, 5: 1, 12: 8, 13: 1, 22: 108, 23: 108, 24: 0, 27: 1}.items():
        values[index - 1] = float(value)  # SPIDER numbers its header words from 1
    return struct.pack(">27f", *values) + b"\0" * 256


def blp2_unknown_compression() -> bytes:
    """A BLP2 texture with compression 99: the BLP decoder raises BLPFormatError (a NotImplementedError)."""
    header = b"BLP2" + struct.pack("<i", 99) + struct.pack("<bbbb", 1, 0, 0, 0) + struct.pack("<II", 4, 4)
    offsets = struct.pack("<16I", *([20 + 128 + 1024] + [0] * 15))  # past the palette the decoder reads first
    lengths = struct.pack("<16I", *([16] + [0] * 15))
    return header + offsets + lengths + b"\0" * 1024 + b"\0" * 16


def png_declares_100000x100000() -> bytes:
    """A PNG header claiming 10 gigapixels, with a few bytes of pixel data."""
    return _png(100_000, 100_000, zlib.compress(b"\0" * 64))


def png_zlib_bomb_at_pixel_limit() -> bytes:
    """A 1-bit PNG of exactly MAX_IMAGE_PIXELS pixels whose zlib stream inflates to twice what the rows need.

    Allowed (it is within the limits), so it must decode, with memory bounded by its pixels: the
    decoder stops at the last row and never inflates the surplus.
    """
    side = math.isqrt(limits.MAX_IMAGE_PIXELS)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    return _png(side, side, zlib.compress(row * side * 2, 9), bit_depth=1, colour=0)


def png_ztxt_bomb() -> bytes:
    """A 1x1 PNG whose zTXt chunk inflates to 4 MB of text, over Pillow's text-chunk limit."""
    text = b"Comment\0\0" + zlib.compress(b"A" * (4 * 1024 * 1024), 9)
    return _png(1, 1, zlib.compress(b"\0\0\0\0"), extra=_png_chunk(b"zTXt", text))


def png_bad_crc() -> bytes:
    """A valid 8x8 PNG with its IHDR checksum flipped."""
    data = bytearray(_saved("PNG", (8, 8)))
    data[29] ^= 0xFF  # the last byte of IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(data)


def bmp_declares_100000x100000() -> bytes:
    """A BMP header claiming 100000 x 100000 24-bit pixels, carrying 64 bytes."""
    info = struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + b"\0" * 64


def jpeg_truncated() -> bytes:
    """A real 64x48 JPEG cut in half: the entropy-coded data ends early."""
    data = _saved("JPEG", quality=90)
    return data[: len(data) // 2]


def webp_truncated() -> bytes:
    """A real 64x48 lossy WebP cut in half."""
    data = _saved("WEBP", quality=80)
    return data[: len(data) // 2]


def tiff_truncated_strip() -> bytes:
    """A real 64x48 uncompressed TIFF whose strip is cut short."""
    data = _saved("TIFF")
    return data[: len(data) // 2]


def gif_not_allowlisted() -> bytes:
    """A valid GIF: a format Pillow reads, but not one Ember accepts."""
    return _saved("GIF", (8, 8))


def eps_not_allowlisted() -> bytes:
    """An EPS file: Pillow would hand it to Ghostscript if it were allowed."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"


CASES = {
    "dds_unimplemented_fourcc.dds": (dds_unimplemented_fourcc, NOT_ALLOWED),
    "spider_stack_without_offset.spi": (spider_stack_without_offset, NOT_ALLOWED),
    "blp2_unknown_compression.blp": (blp2_unknown_compression, NOT_ALLOWED),
    "png_declares_100000x100000.png": (png_declares_100000x100000, OVER_PIXELS),
    "png_zlib_bomb_at_pixel_limit.png": (png_zlib_bomb_at_pixel_limit, DECODES),
    "png_ztxt_bomb.png": (png_ztxt_bomb, UNREADABLE),
    "png_bad_crc.png": (png_bad_crc, UNREADABLE),
    "bmp_declares_100000x100000.bmp": (bmp_declares_100000x100000, OVER_PIXELS),
    "jpeg_truncated.jpg": (jpeg_truncated, UNREADABLE),
    "webp_truncated.webp": (webp_truncated, UNREADABLE),
    "tiff_truncated_strip.tif": (tiff_truncated_strip, UNREADABLE),
    "gif_not_allowlisted.gif": (gif_not_allowlisted, NOT_ALLOWED),
    "eps_not_allowlisted.eps": (eps_not_allowlisted, NOT_ALLOWED),
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.iterdir():
        stale.unlink()
    expected = {}
    for name, (build, outcome) in CASES.items():
        data = build()
        (OUT / name).write_bytes(data)
        expected[name] = outcome
        print(f"{name:36} {len(data):6,} bytes  -> {outcome}")
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(CASES)} files and expected.json to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
