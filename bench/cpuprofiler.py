"""A sampling profiler on the process's CPU time (`ITIMER_PROF`), for a machine shared with other work.

pyinstrument samples wall-clock time, so on a busy machine the time a process waits for a core shows
up in whatever it was doing then (on loopback, mostly `socket.send`: the receiver is woken and runs
first). `ITIMER_PROF` counts the process's own CPU time (user + system) and interrupts it every
`interval` seconds of it; the handler, run by the main thread, charges the interval to the stack it
interrupted (a C call's time goes to the Python line that made it). CPU time of other threads (the
sinks' gzip, WAL checkpoints) also ticks the timer and is charged to the main thread's stack then:
`threads()` gives each thread's own CPU from /proc to read beside it.
"""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path
from types import FrameType

from bench.proc import ROOT, stat_cpu_seconds


class CpuProfiler:
    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.samples = 0

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def reset(self) -> None:
        self.stacks.clear()
        self.samples = 0

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        stack: list[str] = []
        while frame is not None:
            code = frame.f_code
            stack.append(f"{code.co_qualname} {short(code.co_filename)}:{code.co_firstlineno}")
            frame = frame.f_back
        self.stacks[tuple(reversed(stack))] += 1
        self.samples += 1

    def report(self, top: int = 60) -> str:
        """Self and total CPU share per function, biggest first; then the stacks collapsed (flamegraph)."""
        total = max(1, self.samples)
        own: collections.Counter[str] = collections.Counter()
        cum: collections.Counter[str] = collections.Counter()
        for stack, n in self.stacks.items():
            own[stack[-1]] += n
            for fn in set(stack):
                cum[fn] += n
        lines = [f"{self.samples} samples of {self.interval * 1000:.1f} ms CPU ({self.samples * self.interval:.1f} s)"]
        lines.append("\n== self %  (function)")
        lines += [f"{n / total * 100:6.2f}  {fn}" for fn, n in own.most_common(top)]
        lines.append("\n== total %  (function and what it calls)")
        lines += [f"{n / total * 100:6.2f}  {fn}" for fn, n in cum.most_common(top)]
        return "\n".join(lines) + "\n"

    def collapsed(self) -> str:
        return "".join(f"{';'.join(s)} {n}\n" for s, n in self.stacks.most_common())


def short(filename: str) -> str:
    for mark in ("/site-packages/", "/lib/python3"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename


def threads(pid: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process, by thread name and id."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid or os.getpid()}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        out[f"{stat[stat.index('(') + 1 : stat.rindex(')')]}/{task.name}"] = stat_cpu_seconds(stat)
    return out
