"""`bms-gateway run` on its event loop: uvloop by default, asyncio's own by `runtime.event_loop`
(here through its environment override); either way the daemon runs, stores and stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ops_support import eventually, start_gateway, stop, truth_counts, wait_log
from tests.support.site import write_config


@pytest.mark.parametrize(("env", "loop"), [({}, "uvloop"), ({"BMS_GATEWAY__RUNTIME__EVENT_LOOP": "asyncio"}, "asyncio")])
def test_daemon_runs_on_the_configured_loop(tmp_path: Path, env: dict[str, str], loop: str) -> None:
    cfg = write_config(tmp_path, ["rack-a"])
    proc = start_gateway(cfg, tmp_path, env=env)
    try:
        assert wait_log(tmp_path, "starting", proc)["event_loop"] == loop
        wait_log(tmp_path, "ready", proc)
        eventually(lambda: truth_counts(tmp_path).get("rack-a", 0) > 0, proc)  # running past the start
    finally:
        assert stop(proc) == 0
    wait_log(tmp_path, "stopped", proc)
