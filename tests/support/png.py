"""Pixels of a PNG (8-bit RGB or RGBA, not interlaced: what Chromium's screenshots are), for tests that look
at a screenshot without an imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt


def _paeth_row(line: npt.NDArray[np.int64], prior: npt.NDArray[np.int64], bpp: int) -> None:
    for i in range(len(line)):
        a = int(line[i - bpp]) if i >= bpp else 0
        b = int(prior[i])
        c = int(prior[i - bpp]) if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        line[i] = (line[i] + pred) & 0xFF


def pixels(png: bytes) -> npt.NDArray[np.uint8]:
    """height × width × channels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data += body
        pos += 12 + n
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, "only 8-bit RGB(A), not interlaced"
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.int64)
    prior = np.zeros(width * bpp, dtype=np.int64)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 1:  # sub: each byte plus the one bpp before it, running
            line = np.cumsum(line.reshape(width, bpp), axis=0).ravel() & 0xFF
        elif kind == 2:
            line = (line + prior) & 0xFF
        elif kind == 3:  # average: sequential
            for i in range(len(line)):
                left = int(line[i - bpp]) if i >= bpp else 0
                line[i] = (line[i] + (left + int(prior[i])) // 2) & 0xFF
        elif kind == 4:
            _paeth_row(line, prior, bpp)
        out[y] = line
        prior = line
    return out.reshape(height, width, bpp).astype(np.uint8)
