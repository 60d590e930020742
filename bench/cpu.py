"""CPU over a measured window: the process under measurement (the gateway, or the naive baseline), the
bench's own peers (Modbus servers, CAN sender, Mosquitto, VictoriaMetrics, and the bench process, whose
threads are the MQTT subscribers), and the machine's idle time, all from /proc.

On a small machine the peers share the cores with the gateway. When gateway + peers use more than
`SATURATION_PCT` of the machine (or the machine has that little idle time left), the figures measure
the machine's saturation rather than the gateway, and are flagged as such.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from bench.proc import cpu_seconds
from bench.stats import Row, Runs, fmt

CpuReader = Callable[[], float]  # CPU seconds used so far by one process (NaN when unreadable)

SATURATION_PCT = 85.0
SATURATED = "saturated (not a valid measurement of the gateway)"
PEER = "core:"  # figure key prefix: a process group's CPU in % of one core


class MachineTimes(NamedTuple):
    """The machine's CPU time since boot, all cores, in clock ticks: in total and idle (idle + iowait)."""

    total: int
    idle: int


def machine_times(proc_stat: str) -> MachineTimes:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal (guest
    time is already inside user and nice, so it is not added again)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            ticks = [int(x) for x in line.split()[1:9]]
            return MachineTimes(sum(ticks), ticks[3] + ticks[4])
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def read_machine_times() -> MachineTimes:
    with open("/proc/stat") as f:
        return machine_times(f.read())


def pid_reader(pid: int) -> CpuReader:
    """A reader of a process we did not spawn through bench.proc (Mosquitto, VictoriaMetrics, ourselves)."""

    def read() -> float:
        try:
            return cpu_seconds(pid)
        except (OSError, ValueError):
            return float("nan")

    return read


def bench_peers(mosquitto_pid: int, victoria_metrics_pid: int) -> dict[str, list[CpuReader]]:
    """The peers every scenario has: the broker, the database, and this process (the bench's MQTT
    subscribers run on its threads; its main thread mostly sleeps through a window)."""
    return {
        "mosquitto": [pid_reader(mosquitto_pid)],
        "victoria-metrics": [pid_reader(victoria_metrics_pid)],
        "bench": [pid_reader(os.getpid())],
    }


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float  # time.monotonic()
    machine: MachineTimes
    cpu: dict[str, float]  # process group -> CPU seconds so far


@dataclass(frozen=True, slots=True)
class CpuShare:
    """What each process group used over one window, in % of one core, and the machine's idle %."""

    subject: str
    cores: int
    wall: float
    core_pct: dict[str, float]  # the subject and each peer
    idle_pct: float

    @property
    def subject_pct(self) -> float:
        """The subject's share of the machine (every core = 100 %)."""
        return self.core_pct[self.subject] / self.cores

    @property
    def peers_pct(self) -> float:
        return sum(v for k, v in self.core_pct.items() if k != self.subject) / self.cores

    @property
    def busy_pct(self) -> float:
        return 100.0 - self.idle_pct

    def figures(self) -> dict[str, float]:
        """Named figures for `Runs.add`."""
        own = self.subject_pct + self.peers_pct
        return {
            "cpu_pct": self.subject_pct,
            "peers_pct": self.peers_pct,
            "own_pct": own,
            "idle_pct": self.idle_pct,
            "other_pct": max(0.0, self.busy_pct - own),
            **{PEER + k: v for k, v in self.core_pct.items()},
        }


def share(subject: str, start: Snapshot, end: Snapshot, cores: int) -> CpuShare:
    """The window between two snapshots. A group missing at the start began inside the window (its
    CPU before was zero)."""
    wall = end.at - start.at
    core_pct = {k: (v - start.cpu.get(k, 0.0)) / wall * 100.0 if wall > 0 else float("nan") for k, v in end.cpu.items()}
    ticks = end.machine.total - start.machine.total
    idle = (end.machine.idle - start.machine.idle) / ticks * 100.0 if ticks > 0 else float("nan")
    return CpuShare(subject, cores, wall, core_pct, idle)


def verdict(own_pct: float, busy_pct: float, limit: float = SATURATION_PCT) -> str:
    """'' when the window had headroom; else why its figures do not measure the gateway."""
    if own_pct > limit:
        return SATURATED
    if busy_pct > limit:
        return f"machine busy ({busy_pct - own_pct:.0f} % other load): not a valid measurement of the gateway"
    return ""


def flag(runs: Runs, limit: float = SATURATION_PCT, subject: str = "gateway") -> str:
    """The verdict on the median run, or how many runs were saturated when the median was not."""
    worst = verdict(runs.med("own_pct"), 100.0 - runs.med("idle_pct"), limit)
    if worst:
        return worst if subject == "gateway" else worst.replace("the gateway", f"the {subject}")
    own, idle = runs.values.get("own_pct", []), runs.values.get("idle_pct", [])
    bad = sum(1 for o, i in zip(own, idle, strict=True) if verdict(o, 100.0 - i, limit))
    return f"saturated in {bad} of {len(own)} runs" if bad else ""


def saturated(runs: Runs, limit: float = SATURATION_PCT) -> bool:
    """The median run had no headroom."""
    return bool(verdict(runs.med("own_pct"), 100.0 - runs.med("idle_pct"), limit))


class CpuWindow:
    """Samples every process group's CPU and the machine's at `start()` and `stop()`."""

    def __init__(self, subject: str, groups: Mapping[str, Sequence[CpuReader]], cores: int | None = None) -> None:
        self.subject = subject
        self.groups = {k: list(v) for k, v in groups.items()}
        self.cores = cores or os.cpu_count() or 1
        self._start: Snapshot | None = None

    def add(self, group: str, reader: CpuReader) -> None:
        """A process that joins inside the window (the CAN sender): its CPU before it was zero."""
        self.groups.setdefault(group, []).append(reader)

    def snapshot(self) -> Snapshot:
        cpu = {k: sum(r() for r in readers) for k, readers in self.groups.items()}
        return Snapshot(time.monotonic(), read_machine_times(), cpu)

    def start(self) -> None:
        self._start = self.snapshot()

    def stop(self) -> CpuShare:
        if self._start is None:
            raise RuntimeError("CpuWindow.stop() before start()")
        return share(self.subject, self._start, self.snapshot(), self.cores)


def by_peer(runs: Runs, subject: str) -> str:
    """Each peer's CPU in % of one core, median [min–max]."""
    keys = [k for k in runs.values if k.startswith(PEER) and k != PEER + subject]
    return ", ".join(f"{k[len(PEER) :]} {fmt(runs.med(k))}" for k in keys)


def line(label: str, runs: Runs, subject: str) -> str:
    """One line per scenario/rate and side: its CPU, its peers' (total and by peer), the machine's idle;
    medians with the runs' range, and the saturation flag."""
    core = runs.med(PEER + subject)
    text = (
        f"{label}: {subject} CPU {fmt(runs.med('cpu_pct'))} % of the machine ({fmt(core)} % of a core); "
        f"peers {fmt(runs.med('peers_pct'))} % of the machine (% of a core: {by_peer(runs, subject)}); "
        f"machine idle {fmt(runs.med('idle_pct'))} %, other load {fmt(runs.med('other_pct'))} %"
    )
    why = flag(runs, subject="gateway" if subject == "gateway" else "naive baseline")
    return f"{text} -- {why}" if why else text


def run_line(label: str, one: CpuShare) -> str:
    """`line` for a single run, printed as the runs go."""
    runs = Runs()
    runs.add(**one.figures())
    return line(label, runs, one.subject)


def rows(scenario: str, tag: str, gw: Runs, naive: Runs) -> list[Row]:
    """The table's CPU rows for a scenario/rate: the gateway's CPU beside the naive baseline's, the
    peers' and the machine's idle time for each side."""
    why = flag(gw)
    naive_why = flag(naive, subject="naive baseline")
    return [
        Row(scenario, f"{tag}CPU % of the machine", gw.med("cpu_pct"), naive.med("cpu_pct"), better="lower", note=why),
        Row(scenario, f"{tag}peers' CPU % of the machine", gw.med("peers_pct"), naive.med("peers_pct"), better="",
            note=f"% of a core: {by_peer(gw, 'gateway')}"),
        Row(scenario, f"{tag}machine idle %", gw.med("idle_pct"), naive.med("idle_pct"), better="",
            note=f"naive: {naive_why}" if naive_why else ""),
    ]  # fmt: skip


def note(row: Row, why: str) -> None:
    """Flag a figure measured without headroom."""
    if why and why not in row.note:
        row.note = f"{row.note}; {why}" if row.note else why
