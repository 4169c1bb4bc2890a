"""What an image file says about itself: format and dimensions, read from its structure, and whether it
is whole. Not a decoder: enough to refuse bytes that only start like an image (a PNG signature in front
of anything, an image cut short) without Pillow, whose native libraries would weigh more than the
whole Lambda layer. Each reader walks the file's chunks or segments once: linear in its size.
"""

from __future__ import annotations

import zlib

#: The largest side and area accepted (Gemini's largest outputs are about 6000 x 2600).
MAX_SIDE = 16384
MAX_PIXELS = 64 * 1024 * 1024

_PNG = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4, C8, CC.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def read_header(data: bytes) -> tuple[str, str, int, int]:
    """(mime, extension, width, height) of a whole png, jpeg or webp (what the contract names, and what
    Gemini reads and writes); ValueError saying what is wrong otherwise."""
    if data.startswith(_PNG):
        return ("image/png", "png", *_png(memoryview(data)))
    if data.startswith(b"\xff\xd8\xff"):
        return ("image/jpeg", "jpg", *_jpeg(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("image/webp", "webp", *_webp(data))
    raise ValueError(f"not a png, jpeg or webp (it starts {data[:8].hex()})")


def _png(data: memoryview) -> tuple[int, int]:
    """Every chunk whole and its CRC right, IHDR first, image data, then IEND."""
    pos, size, has_data = 8, (0, 0), False
    while True:
        if pos + 12 > len(data):
            raise ValueError("a png cut short before its IEND chunk")
        length = _be(data[pos : pos + 4])
        kind = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"a png cut short in its {kind!r} chunk")
        if zlib.crc32(data[pos + 4 : end - 4]) != _be(data[end - 4 : end]):
            raise ValueError(f"a png whose {kind!r} chunk is corrupt")
        if pos == 8:
            if kind != b"IHDR" or length != 13:
                raise ValueError("a png that does not start with its header chunk")
            size = _be(data[pos + 8 : pos + 12]), _be(data[pos + 12 : pos + 16])
        has_data = has_data or kind == b"IDAT"
        if kind == b"IEND":
            if not has_data:
                raise ValueError("a png without image data")
            return size
        pos = end


def _jpeg(data: bytes) -> tuple[int, int]:
    """Marker segments whole up to the first scan, a frame header among them, and an end-of-image
    marker after the scan (inside the scan, 0xFF is always followed by 0x00 or a restart marker)."""
    pos, size = 2, None
    while True:
        if pos + 4 > len(data):
            raise ValueError("a jpeg cut short in its headers")
        if data[pos] != 0xFF:
            raise ValueError(f"a jpeg with no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # segments without a length
            pos += 2
            continue
        if marker == 0xD9:
            raise ValueError("a jpeg that ends before its image data")
        length = _be(data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise ValueError("a jpeg cut short in its headers")
        if marker in _SOF:
            if length < 8:
                raise ValueError("a jpeg with a short frame header")
            size = _be(data[pos + 7 : pos + 9]), _be(data[pos + 5 : pos + 7])
        if marker == 0xDA:
            if size is None:
                raise ValueError("a jpeg without a frame header")
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                raise ValueError("a jpeg cut short (no end-of-image marker)")
            return size
        pos += 2 + length


def _webp(data: bytes) -> tuple[int, int]:
    """The RIFF container whole, and the size from its first chunk (lossy, lossless or extended)."""
    if _le(data[4:8]) + 8 > len(data):
        raise ValueError("a webp cut short (shorter than its RIFF size)")
    kind, length, payload = data[12:16], _le(data[16:20]), data[20:30]
    if len(payload) < 10 or 20 + length > len(data):
        raise ValueError("a webp cut short in its first chunk")
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        return _le(payload[6:8]) & 0x3FFF, _le(payload[8:10]) & 0x3FFF
    if kind == b"VP8L" and payload[0] == 0x2F:
        bits = _le(payload[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return _le(payload[4:7]) + 1, _le(payload[7:10]) + 1
    raise ValueError(f"a webp whose first chunk {kind!r} is not an image")


def _be(data: bytes | memoryview) -> int:
    return int.from_bytes(data, "big")


def _le(data: bytes | memoryview) -> int:
    return int.from_bytes(data, "little")
