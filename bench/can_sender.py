"""The CAN sender process: replays the bench DBC's frames onto udp_multicast (loopback) at a rate.

    python -m bench.can_sender --port P --rate 16000 --duration 10 --out sent.json [--probe-every 0.05]

Frames are packed once (python-can's udp_multicast wire format) and written in small bursts on a
drift-free schedule. Every `--probe-every` seconds a BenchProbe frame carries the next sequence
number; its send time (time.time_ns) is recorded. `--out` gets the counts, achieved rate and probes.
"""

from __future__ import annotations

import argparse
import json
import time

import can
from can.interfaces.udp_multicast.utils import pack_message

from bench import candata
from bench.canbus import GROUP, loopback_socket


def packed(frame: candata.Frame) -> bytes:
    msg = can.Message(arbitration_id=frame.arbitration_id, data=frame.data, is_extended_id=False, timestamp=0.0)
    return pack_message(msg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--group", default=GROUP)
    ap.add_argument("--rate", type=float, required=True, help="frames per second (probes included)")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--probe-every", type=float, default=0.05)
    ap.add_argument("--racks", type=int, default=1, help="racks (id offsets of 0x1000) interleaved on the bus")
    ap.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at (0: now)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    db = candata.load()
    # 50 cycles of different values, so that nothing downstream can win by caching repeated frames
    cycle = [
        f
        for v in range(50)
        for r in range(a.racks)
        for f in candata.cycle_frames(db, seed=v * 100 + r + 1, id_offset=r * 0x1000)
    ]
    data = [packed(f) for f in cycle]
    probes = [packed(candata.probe_frame(db, seq)) for seq in range(int(a.duration / a.probe_every) + 2)]
    sock = loopback_socket(a.group)
    dest = (a.group, a.port)
    if a.start_at:
        time.sleep(max(0.0, a.start_at - time.time()))

    sent = samples = 0
    probe_sent: list[tuple[int, int]] = []
    n = len(data)
    i = 0
    t0 = time.monotonic()
    next_probe = t0
    end = t0 + a.duration
    send = sock.sendto
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_probe and len(probe_sent) < len(probes):
            seq = len(probe_sent)
            probe_sent.append((seq, time.time_ns()))
            send(probes[seq], dest)
            sent += 1
            samples += 1
            next_probe += a.probe_every
        due = int((now - t0) * a.rate) - sent
        for _ in range(min(due, 400)):
            send(data[i], dest)
            samples += cycle[i].samples
            i += 1
            if i == n:
                i = 0
        sent += max(0, min(due, 400))
        if due <= 0:
            time.sleep(0.0005)
    elapsed = time.monotonic() - t0
    with open(a.out, "w") as f:
        json.dump(
            {
                "frames": sent,
                "samples": samples,
                "elapsed": elapsed,
                "rate": sent / elapsed,
                "probes": probe_sent,
                "racks": a.racks,
            },
            f,
        )


if __name__ == "__main__":
    main()
