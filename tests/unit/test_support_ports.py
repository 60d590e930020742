"""The tests' free ports: each parallel worker its own slice below the ephemeral range, each port once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import ports


def test_the_workers_slices_are_disjoint_and_cover_the_span() -> None:
    slices = [ports.worker_slice(20000, 32768, f"gw{i}", "6") for i in range(6)]
    seen: set[int] = set()
    for s in slices:
        assert len(s) == (32768 - 20000) // 6
        assert not seen & set(s)
        seen |= set(s)
    assert min(seen) == 20000 and max(seen) < 32768
    assert ports.worker_slice(20000, 32768, None, None) == range(20000, 32768)  # no workers: all of it
    assert ports.worker_slice(20000, 32768, "master", "4") == range(20000, 32768)


def test_the_ephemeral_range_is_read_and_has_a_fallback(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ports.ephemeral_low(f) == 40000
    assert ports.ephemeral_low(tmp_path / "missing") == 32768
    f.write_text("junk")
    assert ports.ephemeral_low(f) == 32768


def test_a_port_is_in_the_workers_slice_free_on_tcp_and_udp_and_handed_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    mine = ports.worker_slice(ports.LOWEST, ports.ephemeral_low(), "gw1", "3")
    got = [ports.free_port() for _ in range(50)] + [ports.free_udp_port() for _ in range(50)]
    assert len(set(got)) == len(got)
    assert all(p in mine for p in got)
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", got[-1]))


def test_a_port_in_use_is_passed_over() -> None:
    tcp, udp = socket.socket(socket.AF_INET, socket.SOCK_STREAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tcp, udp:
        tcp.bind(("127.0.0.1", 0))  # held by this test: taken on TCP, and on UDP
        udp.bind(("127.0.0.1", 0))
        taken = [tcp.getsockname()[1], udp.getsockname()[1]]
        free = ports.free_port()  # handed out already: passed over too
        with pytest.raises(RuntimeError, match=f"no free loopback port in {taken[0]}\\.\\.{free}"):
            ports.pick([*taken, free])
        ports._handed.discard(free)
        assert ports.pick([*taken, free]) == free  # neither held nor handed out any more
