"""`bms-gateway run` starting on a store that another process holds locked: it says that it waits (naming the
file, the step and the process holding it), goes on once the lock is released, and stores samples beside
every row the store held; it never exits with "database is locked" and never sets the sound file aside.
Past its bound it exits with code 75 (EX_TEMPFAIL), which systemd's `Restart=on-failure` restarts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Batch, Quality, Sample
from gateway.store.outbox import Outbox
from tests.support.site import write_config
from tests.support.store import batches, last_seq, lock_held
from tests.support.waits import wait_for

WAITING = "store locked by another process: waiting for it"
OLD_ROWS = 5


def old_store(path: Path, journal: str) -> None:
    """A store a gateway wrote before (OLD_ROWS rows of rack "old"), closed, in journal mode `journal`."""
    box = Outbox(path, site="t")
    for i in range(OLD_ROWS):
        box.append([Batch.of_samples("old", [Sample(1_700_000_000_000_000_000 + i, "soc", float(i), "%",
                                                    Quality.GOOD, "old")])])  # fmt: skip
    box.close()
    db = sqlite3.connect(path)
    assert db.execute(f"PRAGMA journal_mode={journal}").fetchone()[0] == journal
    db.close()


def events(log: Path, name: str) -> list[dict[str, Any]]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [e for e in (json.loads(x) for x in lines if x.startswith("{")) if e.get("event") == name]


def start(cfg: Path, log: Path, *prelude: str) -> subprocess.Popen[bytes]:
    """`bms-gateway run -c cfg` (after the Python statements `prelude`, in the same process), stderr to `log`."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    code = "; ".join(["import sys", *prelude, "from gateway.cli.main import main", "sys.exit(main(sys.argv[1:]))"])
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", code, "run", "-c", str(cfg)], stdout=out, stderr=out,
                                env=env, cwd=cfg.parent)  # fmt: skip


@pytest.mark.parametrize(("journal", "how"), [("wal", "IMMEDIATE"), ("delete", "EXCLUSIVE")])
def test_the_daemon_waits_for_a_locked_store_then_runs(tmp_path: Path, journal: str, how: str) -> None:
    db = tmp_path / "store.db"
    old_store(db, journal)
    cfg = write_config(tmp_path, ["rack-0"], db=db)
    log = tmp_path / "gateway.log"
    with lock_held(db, how) as holder:
        proc = start(cfg, log)
        try:
            waiting = wait_for(lambda: events(log, WAITING), 60, "the gateway saying that it waits", proc, log=log)[0]
            holder.execute("COMMIT")
            wait_for(lambda: last_seq(db) > OLD_ROWS + 2, 60, "new samples stored", proc, log=log)
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert waiting["path"] == str(db) and waiting["level"] == "warning"
    assert f"pid {os.getpid()} " in waiting["held_by"]  # this test's process is what holds it up
    assert events(log, "store lock released: set-up goes on")
    assert not [p.name for p in tmp_path.iterdir() if ".damaged" in p.name]
    stored = batches(db)
    assert [b.samples()[0].value for b in stored if b.source == "old"] == [float(i) for i in range(OLD_ROWS)]
    assert sum(b.n for b in stored if b.source == "rack-0") > 0
    print(f"{journal} store held {how}: waited, then stored {sum(b.n for b in stored if b.source == 'rack-0')} "
          f"samples beside the {OLD_ROWS} old rows")  # fmt: skip


def test_a_store_locked_past_the_bound_exits_75(tmp_path: Path) -> None:
    """Its bound shortened to 1 s (60 s in the daemon) in the gateway's own process."""
    db = tmp_path / "store.db"
    old_store(db, "delete")
    cfg = write_config(tmp_path, ["rack-0"], db=db)
    log = tmp_path / "gateway.log"
    with lock_held(db, "EXCLUSIVE"):
        proc = start(cfg, log, "import gateway.store.lockwait as w", "w.SETUP_WAIT = 1.0")
        try:
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 75, log.read_text()[-3000:]
    gave_up = events(log, "store still locked by another process: giving up")
    assert len(gave_up) == 1 and gave_up[0]["path"] == str(db) and gave_up[0]["step"] == "damage check"
    assert "Traceback" not in log.read_text()
    assert not [p.name for p in tmp_path.iterdir() if ".damaged" in p.name]
