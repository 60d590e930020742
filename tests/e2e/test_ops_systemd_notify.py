"""`bms-gateway run` under a NOTIFY_SOCKET, as systemd starts it: READY, WATCHDOG, STATUS, STOPPING.

The test listens on a real unix datagram socket (a path, and the abstract namespace) exactly as
systemd does, and judges by the order of the notifications and log lines, never by wall-clock time.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.ops_support import NotifyListener, eventually, log_events, start_gateway, stop, truth_counts, wait_log
from tests.support.site import write_config

BLOCKER = """
import asyncio, os, signal, socket, sys, time
from gateway import app

def _mark(text):
    addr = os.environ["NOTIFY_SOCKET"]
    addr = "\\0" + addr[1:] if addr.startswith("@") else addr
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(text.encode(), addr)

def _install(rt):
    def block():  # a bug that blocks the event loop
        _mark("X_BLOCK=begin")
        time.sleep(float(os.environ["BLOCK_SECONDS"]))
        _mark("X_BLOCK=end")
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, block)

app.RUNTIME_PARTS += ("__main__:_install",)  # one more part of the runtime, after the daemon's own
from gateway.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_after_sources_watchdog_status_and_stopping(tmp_path: Path, abstract: bool) -> None:
    cfg = write_config(tmp_path, ["rack-a", "rack-b"])
    listener = NotifyListener(abstract=abstract)
    proc = start_gateway(cfg, tmp_path, env={"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "200000"})
    try:
        ready = listener.wait_for(lambda m: m.get("READY") == "1", alive=proc)
        # By the time READY=1 was sent, the store was open and every source had started.
        assert (tmp_path / "store.db").exists()
        events = [e["event"] for e in log_events(tmp_path)]
        started = [i for i, e in enumerate(events) if e == "simulated rack started"]
        assert len(started) == 2
        assert max(started) < events.index("ready")
        assert "offline of " in listener.messages[ready]["STATUS"]
        # WATCHDOG=1 keeps coming while it runs.
        listener.wait_for(lambda m: sum(x.get("WATCHDOG") == "1" for x in listener.messages[ready:]) >= 5, alive=proc)
        # STATUS= is refreshed with the racks online once their samples are in.
        listener.wait_for(lambda m: "2 online, 0 degraded, 0 offline of 2 racks" in m.get("STATUS", ""), alive=proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        listener.poll()
    finally:
        stop(proc)
        listener.close()
    kinds = [next(iter(m)) for m in listener.messages]
    stopping = next(i for i, m in enumerate(listener.messages) if m.get("STOPPING") == "1")
    assert kinds.count("READY") == 1
    assert kinds.index("READY") < stopping
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()


def test_watchdog_stops_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["rack-a"])
    listener = NotifyListener()
    script = tmp_path / "blocking_gateway.py"
    script.write_text(BLOCKER)
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "100000", "BLOCK_SECONDS": "1.5"}
    argv = [sys.executable, str(script), "run", "-c", str(cfg)]
    proc = start_gateway(cfg, tmp_path, env=env, argv=argv)
    try:
        ready = listener.wait_for(lambda m: m.get("READY") == "1", alive=proc)
        listener.wait_for(lambda m: sum("WATCHDOG" in x for x in listener.messages[ready:]) >= 3, alive=proc)
        proc.send_signal(signal.SIGUSR1)
        begin = listener.wait_for(lambda m: m.get("X_BLOCK") == "begin", alive=proc)
        end = listener.wait_for(lambda m: m.get("X_BLOCK") == "end", alive=proc)
        # Pings resume once the loop runs again.
        listener.wait_for(lambda m: sum("WATCHDOG" in x for x in listener.messages[end:]) >= 2, alive=proc)
    finally:
        assert stop(proc) == 0
        listener.close()
    blocked = listener.messages[begin + 1 : end]
    # At 20 pings a second, a 1.5 s block would hold ~15 of them: none was sent.
    assert not [m for m in blocked if "WATCHDOG" in m]


def test_no_notify_socket_runs_as_before(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["rack-a"])
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_log(tmp_path, "ready", proc)
        eventually(lambda: truth_counts(tmp_path).get("rack-a", 0) > 0, proc)  # running past the start
    finally:
        assert stop(proc) == 0
    assert "cannot notify" not in (tmp_path / "gateway.log").read_text()
