"""kill -9 while appending: every batch whose commit returned is there after reopening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.store.outbox import Outbox

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gateway.model import Batch, Quality, Sample
    from gateway.store.outbox import Outbox
    ob = Outbox(Path(sys.argv[1]), consumers=["influx"])
    i = 0
    while True:
        t = time.time_ns()
        batches = [
            Batch.of_samples("sim", [Sample(t, "soc", float(i * 10 + k), "%", Quality.GOOD, "r1")]) for k in range(10)
        ]
        last = ob.append(batches)  # returns after COMMIT
        print(last, flush=True)
        i += 1
    """
)


def test_kill_9_keeps_every_committed_batch(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    ob = Outbox(db, consumers=["influx"])
    assert ob.last_seq() >= committed
    rows = list(ob.query())
    seqs = [r.seq for r in rows]
    assert seqs == list(range(1, len(seqs) + 1))  # no hole, nothing torn
    assert len(seqs) >= committed
    assert [r.batch.samples()[0].value for r in rows[:20]] == [float(v) for v in range(20)]
    assert ob.acked("influx") == 0  # the cursor survived as well
    ob.close()
