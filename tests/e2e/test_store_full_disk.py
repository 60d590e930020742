"""`bms-gateway run` whose store's disk fills: it stays up, alarms, keeps the newest data in memory, starts
again on the full disk, stores again once there is room, and loses nothing it had committed.

The disk is a 4 MB tmpfs when the test runs as root and `mount -t tmpfs -o size=4m` works: the test fills
it with a file written until ENOSPC ("database or disk is full") and frees it by deleting the file.
Otherwise (a CI machine without mount) it is a shim, the daemon's RLIMIT_FSIZE, set from the test with
prlimit(2): no file of the daemon may grow past the size its WAL has, so every write that needs more room
fails ("disk I/O error", as from a failing disk), and lifting the limit frees the disk; the restart
is started under the limit. Neither needs a hook in the gateway. `BMS_TEST_DISK=shim` uses the shim as
root too. The daemon's log goes through a pipe (the shim would stop a log file from growing).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ops_support import http_get, wait_http
from tests.servers import free_port
from tests.support.site import PLAIN_RACK, write_config
from tests.support.waits import holds_for, wait_for

STAYS_UP = 30.0  # seconds the daemon must keep answering after the disk filled (the requirement itself)


class Disk:
    """A disk that can be filled and freed: a real 4 MB tmpfs, or the RLIMIT_FSIZE shim."""

    def __init__(self, root: Path) -> None:
        self.path = root / "disk"
        self.path.mkdir()
        self.tmpfs = os.environ.get("BMS_TEST_DISK") != "shim" and os.geteuid() == 0 and _mount(self.path)
        self.limit: int | None = None  # the shim's file size limit while the disk is "full"

    def fill(self, pid: int) -> None:
        if self.tmpfs:
            with (self.path / f"filler-{time.monotonic_ns()}").open("wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\xff" * 65536)
                    f.flush()
            return
        sizes = [p.stat().st_size for p in self.path.glob("store.db*") if not p.name.endswith("-shm")]
        self.limit = max(min(sizes), 65536)  # neither the file nor its WAL can grow; the WAL index (32 kB) can be
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (self.limit, resource.RLIM_INFINITY))

    def free(self, pid: int) -> None:
        if self.tmpfs:
            for filler in self.path.glob("filler-*"):
                filler.unlink()
            return
        self.limit = None
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def preexec(self) -> None:
        """In the child before it runs the daemon: the shim's limit, when the disk is "full"."""
        if self.limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, resource.RLIM_INFINITY))

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.path)], check=False)

    def __str__(self) -> str:
        return "a 4 MB tmpfs" if self.tmpfs else "the RLIMIT_FSIZE shim"


def _mount(path: Path) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


class Daemon:
    """`bms-gateway run` with its stderr copied line by line into the test's log file."""

    def __init__(self, cfg: Path, log: Path, port: int, disk: Disk) -> None:
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cfg.parent,
            preexec_fn=disk.preexec,
        )
        self.log = log
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        assert self.proc.stderr is not None
        with self.log.open("ab") as out:
            for line in self.proc.stderr:
                out.write(line)
                out.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metric(self, name: str, **labels: str) -> float:
        text = http_get(f"{self.base}/metrics")[2]
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def wait(self, what: str, cond: Callable[[], bool], timeout: float = 60.0) -> None:
        wait_for(cond, timeout, what, self.proc, step=0.1, log=self.log, detail=self.tail)

    def stays_up(self, seconds: float) -> int:
        """Ask /healthz again and again for `seconds` (the daemon alive and answering 200 every time)."""

        def answers() -> None:
            assert self.alive(), f"the daemon exited ({self.proc.returncode}): {self.tail()}"
            status, _, body = http_get(f"{self.base}/healthz", timeout=10)
            assert (status, body) == (200, "ok\n")

        return holds_for(answers, seconds)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self._copier.join(10)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._copier.join(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def config(tmp: Path, db: Path, port: int) -> Path:
    rack = {**PLAIN_RACK, "truth_file": None}
    return write_config(
        tmp,
        ["rack-0", "rack-1"],
        http_port=port,
        rack=rack,
        db=db,
        store={"memory_buffer_samples": 5000},  # about 2 s of these racks: some are dropped
    )


def stored_rows(db: Path) -> dict[int, bytes]:
    """Every committed row (seq -> payload), read without writing (the disk may be full)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {int(seq): bytes(payload) for seq, payload in con.execute("SELECT seq, payload FROM batches")}
    finally:
        con.close()


def newest_ts(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT coalesce(max(ts), 0) FROM batches WHERE kind = 'samples'").fetchone()[0])
    finally:
        con.close()


@contextlib.contextmanager
def full_disk(tmp: Path) -> Iterator[Disk]:
    disk = Disk(tmp)
    try:
        yield disk
    finally:
        disk.close()


def test_a_full_disk_is_an_alarm_not_a_crash_and_nothing_committed_is_lost(tmp_path: Path) -> None:
    port = free_port()
    with full_disk(tmp_path) as disk:
        db = disk.path / "store.db"
        cfg = config(tmp_path, db, port)
        log = tmp_path / "gateway.log"
        daemon = Daemon(cfg, log, port, disk)
        try:
            wait_http(f"{daemon.base}/healthz", daemon.proc, timeout=60)
            daemon.wait("samples stored", lambda: daemon.metric("bms_gateway_samples_stored_total") > 2000)

            disk.fill(daemon.proc.pid)
            daemon.wait("the disk-full state", lambda: daemon.metric("bms_gateway_store_disk_full") == 1)
            committed = stored_rows(db)
            assert committed, "nothing was stored before the disk filled"
            answers = daemon.stays_up(STAYS_UP)
            assert daemon.metric("bms_gateway_store_disk_full") == 1
            dropped = daemon.metric("bms_gateway_samples_dropped_total", reason="disk_full")
            assert dropped > 0  # the memory's bound held: the oldest waiting samples went, counted
            status = json.loads(http_get(f"{daemon.base}/api/status")[2])
            assert any("store_disk_full" in json.dumps(a) for a in status["alarms"]), status["alarms"]

            assert daemon.stop() == 0
            if disk.tmpfs:
                disk.fill(0)  # what the stop freed (a WAL it could checkpoint) is taken again
            daemon = Daemon(cfg, log, port, disk)  # a restart on the full disk
            wait_http(f"{daemon.base}/healthz", daemon.proc, timeout=60)
            daemon.wait("the disk-full state after the restart",
                        lambda: daemon.metric("bms_gateway_store_disk_full") == 1)  # fmt: skip
            answers += daemon.stays_up(10.0)

            freed_at = time.time_ns()
            disk.free(daemon.proc.pid)
            daemon.wait("new samples stored after the disk was freed", lambda: newest_ts(db) > freed_at, timeout=90)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
        final = stored_rows(db)
        lost = [seq for seq, payload in committed.items() if final.get(seq) != payload]
        seqs = sorted(final)
        print(f"disk: {disk}; committed before the disk filled: {len(committed)} rows; /healthz answered "
              f"{answers} times while full; dropped from memory: {dropped:.0f} samples; rows now: {len(final)}; "
              f"lost: {len(lost)}")  # fmt: skip
        assert lost == []
        assert seqs == list(range(seqs[0], seqs[-1] + 1))  # no hole: nothing stored was deleted
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(e.get("event", "").startswith("store cannot be written") for e in events)
        assert any(e.get("event", "").startswith("store written again") for e in events)
        assert not any("Traceback" in line for line in log.read_text().splitlines())
