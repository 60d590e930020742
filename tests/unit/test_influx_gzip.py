"""InfluxDB bodies are gzip-compressed with ISA-L where it has a wheel (x86-64, aarch64): the same gzip
stream format at a fifth of zlib's CPU time, about as small; any gzip reader reads it."""

from __future__ import annotations

import gzip
import platform
import zlib

from gateway.sinks.influx import sink
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.influx.sink import chunks_body, gzip_body, render_chunks
from gateway.store.outbox import Row
from tests.unit.test_sink_render import T, modbus_batch


def test_bodies_are_compressed_with_isa_l_where_it_has_a_wheel() -> None:
    if platform.machine() in ("x86_64", "aarch64", "AMD64"):
        assert sink.deflate.__name__ == "isal.isal_zlib"
    else:
        assert sink.deflate is zlib


def test_a_compressed_body_reads_back_with_any_gzip_reader() -> None:
    rows = [Row(i, T, modbus_batch(f"r{i}", T)) for i in range(1, 6)]
    body = chunks_body(render_chunks(rows, LineRenderer("s", "ms"), None)[0]).encode()
    packed = gzip_body(body)
    assert gzip.decompress(packed) == body == zlib.decompress(packed, wbits=31)
    assert len(packed) < len(body) / 12  # as small as zlib's level 1 (about 18 times smaller here)
