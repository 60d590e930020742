"""Micro-benchmark of the outbox: `python -m bench.micro_store [--racks 100] [--points 1000] [--rounds 5]`.

One round is one second of the 100-rack Modbus site: one batch per rack (RackModel samples padded
to `--points`, 8 runs of one ts each, like 8 block reads), appended in group commits of 5 batches,
read by two sinks in turns of 5,000 samples. Printed: CPU µs per point (time.process_time, best of
rounds) of encoding and decoding a row (format 3, see gateway.store.codec), of append + 2 reads in
three cases (both sinks at the head: the second read hits the decoded-row cache; every read decoding;
the second sink one round, 100,000 points, behind), stored bytes per point, the wall time of one
group commit (5 batches) over 10 rounds, p99 and worst, with SQLite's automatic WAL checkpoints and
with checkpoints in a thread (`Outbox.checkpoint_in_thread`, as the daemon runs), and the live state
(the status page's observer) per point, without a view and with one view a round. The garbage
collector runs as in the daemon (`gcpolicy.settle()` once the input is built).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.micro_sinks import measure
from gateway.model import Batch, Sample
from gateway.ops.livestate import LiveState
from gateway.runtime import gcpolicy
from gateway.sources.sim.battery import RackModel, RackParams
from gateway.store import codec
from gateway.store.outbox import Outbox

SEGMENTS = 8
COMMIT = 5  # batches per group commit (0.05 s of 100 racks at 1 Hz)
TURN = 5000  # samples per sink read (batch_max_samples)


def make_batches(racks: int, points: int, ts: int) -> list[Batch]:
    """One batch per rack: the simulated rack's samples (floats, ints, strings) padded with cell voltages,
    in SEGMENTS runs of one ts each."""
    model = RackModel(RackParams())
    out = []
    for r in range(racks):
        rack = f"rack{r + 1:03d}"
        samples = model.samples(ts, rack)[:points]
        i = 0
        while len(samples) < points:
            m, c = divmod(i, 16)
            samples.append(Sample(ts, "cell_voltage", 3.2 + (i % 100) / 1000, "V", "good", rack, m + 1, c + 1))
            i += 1
        step = -(-len(samples) // SEGMENTS)
        samples = [s._replace(ts=s.ts + i // step) for i, s in enumerate(samples)]
        out.append(Batch.of_samples(f"modbus:{rack}", samples, device=rack, created=ts))
    return out


def drain(box: Outbox, pos: dict[str, int], upto: dict[str, int]) -> None:
    """The sinks take turns, TURN samples each, until each reached its `upto`."""
    more = True
    while more:
        more = False
        for sink in pos:
            if pos[sink] >= upto[sink]:
                continue
            rows = box.read(pos[sink], max_samples=TURN)
            rows = [r for r in rows if r.seq <= upto[sink]]
            if rows:
                pos[sink] = rows[-1].seq
                more = True


def run(rounds: list[list[Batch]], case: str) -> tuple[float, float]:
    """(CPU µs per point of append + 2 reads, stored bytes per point)."""
    n = sum(len(b) for b in rounds[0])
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        if case == "miss":
            box.decoded_max_samples = 0
        pos = {"influx": 0, "mqtt": 0}
        last_round = 0

        def step(i: int) -> None:
            nonlocal last_round
            batches = rounds[i]
            for k in range(0, len(batches), COMMIT):
                box.append(batches[k : k + COMMIT])
            head = box.last_seq()
            # "behind": mqtt reads the previous round while influx reads this one
            drain(box, pos, {"influx": head, "mqtt": last_round if case == "behind" else head})
            last_round = head

        if case == "behind":
            step(0)  # mqtt starts one round behind
        cpu = measure(lambda i: step(i + (1 if case == "behind" else 0)), len(rounds) - (case == "behind"), n)
        size = box.db.execute("SELECT sum(length(payload)), sum(n) FROM batches").fetchone()
        box.close()
    return cpu, size[0] / size[1]


def codec_times(rounds: list[list[Batch]]) -> tuple[float, float]:
    """(encode, decode) CPU µs per point of a round's rows."""
    n = sum(len(b) for b in rounds[0])
    tables = {b.keys.digest: codec.KeyTable(b.keys) for b in rounds[0]}
    payloads = [[codec.encode(b) for b in r] for r in rounds]
    enc = measure(lambda i: [codec.encode(b) for b in rounds[i]], len(rounds), n)
    dec = measure(lambda i: [codec.decode(p, tables.__getitem__) for p in payloads[i]], len(rounds), n)
    return enc, dec


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_store", description=__doc__)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = 1_760_000_000_000_000_000
    rounds = [make_batches(args.racks, args.points, t0 + i * 1_000_000_000) for i in range(args.rounds + 1)]
    n = sum(len(b) for b in rounds[0])
    gcpolicy.settle()
    results: dict[str, float] = {}
    print(f"{n} points per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/point:")
    results["encode"], results["decode"] = codec_times(rounds)
    print(f"  {'encode a row':52s} {results['encode']:8.3f}")
    print(f"  {'decode a row':52s} {results['decode']:8.3f}")
    size = 0.0
    for case, label in (("hit", "sinks at the head (2nd read hits)"), ("miss", "every read decodes"),
                        ("behind", "2nd sink 100,000 samples behind")):  # fmt: skip
        results[case], size = run(rounds, case)
        print(f"  {'append + 2 reads, ' + label:52s} {results[case]:8.2f}")
    results["bytes"] = size
    print(f"  {'stored bytes per point':52s} {size:8.1f}")
    for thread in (False, True):
        p99, worst = commit_times(rounds, thread)
        where = "in a thread" if thread else "automatic"
        print(f"  {'group commit ms, checkpoints ' + where:52s} p99 {p99:6.1f}  worst {worst:6.1f}")
    for view, label in ((False, "live state, no view"), (True, "live state, a view per round")):
        results[label] = live_state(rounds, n, view)
        print(f"  {label:52s} {results[label]:8.3f}")
    return results


def commit_times(rounds: list[list[Batch]], thread: bool, repeat: int = 10) -> tuple[float, float]:
    """(p99, worst) wall ms of one group commit of COMMIT batches."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        if thread:
            box.checkpoint_in_thread()
        for i in range(repeat):
            batches = rounds[i % len(rounds)]
            for k in range(0, len(batches), COMMIT):
                t0 = time.perf_counter()
                box.append(batches[k : k + COMMIT])
                times.append(time.perf_counter() - t0)
        box.close()
    times.sort()
    return times[int(len(times) * 0.99)] * 1e3, times[-1] * 1e3


def live_state(rounds: list[list[Batch]], n: int, view: bool) -> float:
    live = LiveState()

    def step(i: int) -> None:
        for k in range(0, len(rounds[i]), COMMIT):
            live(rounds[i][k : k + COMMIT])
        if view:
            live.racks(0)

    return measure(step, len(rounds), n)


if __name__ == "__main__":
    main()
