"""Micro-benchmark of the outbox: `python -m bench.micro_store [--racks 100] [--points 1000] [--rounds 5]`.

One round is one second of the 100-rack Modbus site: one batch per rack (RackModel samples padded
to `--points`, 8 segments of one ts each, like 8 block reads), appended in group commits of 5
batches, read by two sinks in turns of 5,000 samples. Printed: CPU µs per sample (time.process_time,
best of rounds) and stored bytes per sample, for
- "before": JSON rows (batches without a layout) and the decoded-row cache of before (50,000 samples);
- "after": compact rows (batches with their source's Layout) and today's cache;
and the ratio, in three cases: both sinks at the head (the second reader hits the cache), every read
decoding (cache off), and the second sink one round (100,000 samples) behind the first. Then the live
state (the status page's observer) per sample: batches without and with a layout, no view and a view
asked for once a round. Last, the wall time of one group commit (5 batches) over 10 rounds, p99 and
worst, with SQLite's automatic WAL checkpoints (run by the commit that fills the WAL) and with
checkpoints in a thread (`Outbox.checkpoint_in_thread`, as the daemon runs). The garbage collector
runs as in the daemon (`gcpolicy.settle()` once the input is built): with the interpreter's
defaults, full collections walking the input's 600,000 samples would dominate whichever side
allocates more.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.micro_sinks import measure
from gateway.model import Batch, Layout, Sample
from gateway.ops.livestate import LiveState
from gateway.runtime import gcpolicy
from gateway.sources.sim.battery import RackModel, RackParams
from gateway.store.outbox import Outbox

SEGMENTS = 8
COMMIT = 5  # batches per group commit (0.05 s of 100 racks at 1 Hz)
TURN = 5000  # samples per sink read (batch_max_samples)


def make_batches(racks: int, points: int, ts: int) -> list[Batch]:
    """One batch per rack: the simulated rack's samples (floats, ints, strings) padded with cell voltages."""
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
        out.append(Batch(f"modbus:{rack}", samples, device=rack, created=ts))
    return out


def with_layouts(batches: list[Batch], layouts: dict[str, Layout], layout: bool) -> list[Batch]:
    out = []
    for b in batches:
        n = len(b.samples)
        step = -(-n // SEGMENTS)
        segments = [(a, min(n, a + step)) for a in range(0, n, step)]
        samples = [s._replace(ts=s.ts + i // step) for i, s in enumerate(b.samples)]
        lay = layouts.get(b.source)
        if lay is None:
            lay = layouts[b.source] = Layout([(s[1], s[3], s[5], s[6], s[7]) for s in samples], segments)
        out.append(Batch(b.source, samples, device=b.device, created=b.created, layout=lay if layout else None))
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


def run(rounds: list[list[Batch]], after: bool, case: str) -> tuple[float, float]:
    """(CPU µs per sample of append + 2 reads, stored bytes per sample)."""
    n = sum(len(b) for b in rounds[0])
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        if not after:
            box.decoded_max_samples = 50_000
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


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_store", description=__doc__)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = 1_760_000_000_000_000_000
    layouts: dict[str, Layout] = {}
    plain = [make_batches(args.racks, args.points, t0 + i * 1_000_000_000) for i in range(args.rounds + 1)]
    n = sum(len(b) for b in plain[0])
    gcpolicy.settle()
    results: dict[str, tuple[float, float]] = {}
    print(f"{n} samples per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/sample:")
    print(f"  {'append + 2 reads':34s} {'before':>8s} {'after':>8s} {'ratio':>7s}")
    sizes = (0.0, 0.0)
    for case, label in (("hit", "sinks at the head (2nd read hits)"), ("miss", "every read decodes"),
                        ("behind", "2nd sink 100,000 samples behind")):  # fmt: skip
        before, size_b = run([with_layouts(b, layouts, False) for b in plain], False, case)
        after, size_a = run([with_layouts(b, layouts, True) for b in plain], True, case)
        sizes = (size_b, size_a)
        results[case] = (before, after)
        print(f"  {label:34s} {before:8.2f} {after:8.2f} {before / after:6.1f}x")
    print(f"  {'stored bytes per sample':34s} {sizes[0]:8.1f} {sizes[1]:8.1f} {sizes[0] / sizes[1]:6.1f}x")
    commits = [commit_times([with_layouts(b, layouts, True) for b in plain], thread) for thread in (False, True)]
    for k, label in ((0, "group commit p99 ms (wall)"), (1, "group commit worst ms (wall)")):
        b, a = commits[0][k], commits[1][k]
        print(f"  {label:34s} {b:8.1f} {a:8.1f} {b / a:6.1f}x")
    for view, label in ((False, "live state, no view"), (True, "live state, a view per round")):
        live = [live_state([with_layouts(b, layouts, layout) for b in plain], n, view) for layout in (False, True)]
        results[label] = (live[0], live[1])
        print(f"  {label:34s} {live[0]:8.2f} {live[1]:8.2f} {live[0] / max(live[1], 1e-9):6.1f}x")
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
