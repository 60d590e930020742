"""Run the gateway in-process under a profiler; SIGUSR1 writes the profile and exits at once.

    python -m bench.profile_run OUT_PREFIX run -c gateway.yaml

With `BENCH_PROFILER=cpu` in the environment the profiler samples the process's CPU time
(`bench/cpuprofiler.py`: what a busy machine does not distort), starts over on SIGUSR2 and writes
`OUT_PREFIX-cpu.txt` (self and total share per function, and each thread's CPU seconds) and
`OUT_PREFIX-collapsed.txt` (stacks for a flame graph); with `BENCH_PROFILER=memory` tracemalloc
(`BENCH_TRACE_FRAMES` frames, 1 by default) writes what is allocated then by line and by file to
`OUT_PREFIX-memory.txt`; with `BENCH_PROFILER=rss` no profiler runs and `OUT_PREFIX-rss.txt` says
where the resident memory is (per mapping, objects by type, modules); otherwise pyinstrument samples wall-clock time
and writes `-tree.txt` and `-flat.txt`.
(The gateway's own SIGTERM shutdown may take long while sinks drain; the profile must not wait.)"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path

from pyinstrument import Profiler

from bench.cpuprofiler import CpuProfiler, threads
from gateway.cli.main import main as gateway_main


def main() -> None:
    prefix = Path(sys.argv[1])
    out = prefix.with_name
    if os.environ.get("BENCH_PROFILER") == "rss":

        def dump_rss(signum: int, frame: object) -> None:
            out(prefix.name + "-rss.txt").write_text(rss_report())
            os._exit(0)

        signal.signal(signal.SIGUSR1, dump_rss)
        sys.exit(gateway_main(sys.argv[2:]))
    if os.environ.get("BENCH_PROFILER") == "memory":
        tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))

        def dump_memory(signum: int, frame: object) -> None:
            snap = tracemalloc.take_snapshot()
            traced, peak = tracemalloc.get_traced_memory()
            status = Path("/proc/self/status").read_text()
            rss = [ln for ln in status.splitlines() if ln.startswith(("VmRSS", "VmHWM"))]
            head = [f"traced {traced / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB); {'; '.join(rss)}"]
            by_line = [str(s) for s in snap.statistics("lineno")[:60]]
            by_file = [str(s) for s in snap.statistics("filename")[:40]]
            largest = []  # single blocks: a big buffer (a write's body, an index) shows here, not by line
            for t in sorted(snap.traces, key=lambda t: -t.size)[:15]:
                largest.append(f"{t.size / 1e6:.1f} MB")
                largest += [f"    {f.filename}:{f.lineno}" for f in t.traceback]
            parts = [*head, "\n== by line", *by_line, "\n== by file", *by_file]
            text = "\n".join([*parts, "\n== largest blocks", *largest])
            out(prefix.name + "-memory.txt").write_text(text + "\n")
            os._exit(0)

        signal.signal(signal.SIGUSR1, dump_memory)
        sys.exit(gateway_main(sys.argv[2:]))
    if os.environ.get("BENCH_PROFILER") == "cpu":
        sampler = CpuProfiler()
        start_cpu = threads()

        def dump_cpu(signum: int, frame: object) -> None:
            sampler.stop()
            spent = {t: s - start_cpu.get(t, 0.0) for t, s in threads().items()}
            per_thread = "\n".join(f"{s:8.2f} s  {t}" for t, s in sorted(spent.items(), key=lambda x: -x[1]))
            out(prefix.name + "-cpu.txt").write_text(f"== CPU seconds per thread\n{per_thread}\n\n{sampler.report()}")
            out(prefix.name + "-collapsed.txt").write_text(sampler.collapsed())
            os._exit(0)

        def reset(signum: int, frame: object) -> None:  # the measured window starts (after the warm-up)
            sampler.reset()
            start_cpu.update(threads())

        signal.signal(signal.SIGUSR1, dump_cpu)
        signal.signal(signal.SIGUSR2, reset)
        sampler.start()
        sys.exit(gateway_main(sys.argv[2:]))
    profiler = Profiler(interval=0.005, async_mode="disabled")

    def dump(signum: int, frame: object) -> None:
        session = profiler.stop()
        from pyinstrument.renderers import ConsoleRenderer

        tree = ConsoleRenderer(unicode=False, color=False, show_all=False).render(session)
        flat = ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self").render(session)
        out(prefix.name + "-tree.txt").write_text(tree)
        out(prefix.name + "-flat.txt").write_text(flat)
        os._exit(0)

    signal.signal(signal.SIGUSR1, dump)
    profiler.start()
    sys.exit(gateway_main(sys.argv[2:]))


def rss_report() -> str:
    """Where the resident memory is: per mapping (from smaps), the live objects by type, the modules."""
    import collections
    import gc

    rss: collections.Counter[str] = collections.Counter()
    name = "?"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        parts = line.split()
        if not parts[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
            name = parts[5] if len(parts) > 5 else "[anon]"
        elif parts[0] == "Rss:":
            rss[name] += int(parts[1])
    status = [ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(("VmRSS", "VmHWM"))]
    lines = ["; ".join(status), "\n== RSS kB by mapping"]
    lines += [f"{kb:9d}  {path}" for path, kb in rss.most_common(30)]
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    lines += ["\n== objects the collector tracks, by type"] + [f"{n:9d}  {t}" for t, n in types.most_common(30)]
    packages = collections.Counter(m.split(".")[0] for m in sys.modules)
    lines += [f"\n== {len(sys.modules)} modules, by package"] + [f"{n:6d}  {p}" for p, n in packages.most_common(40)]
    return "\n".join([*lines, "\n== allocators", *allocator_report()]) + "\n"


def allocator_report() -> list[str]:
    """What Python's small-object allocator holds (its arenas, the bytes in live blocks) and how much
    resident memory glibc gives back to the system on `malloc_trim(0)` (freed heap it had kept)."""
    import ctypes
    import io
    import os
    import re

    err = io.StringIO()
    saved = os.dup(2)
    r, w = os.pipe()
    os.dup2(w, 2)  # sys._debugmallocstats writes to the C stderr
    os.close(w)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    with os.fdopen(r) as f:
        err.write(f.read())
    stats = dict(re.findall(r"^# (arenas allocated current|bytes in allocated blocks|bytes in available blocks|"
                            r"bytes in \d+ unused pools)\s*=\s*([\d,]+)", err.getvalue(), re.M))  # fmt: skip
    out = [f"pymalloc {k}: {int(v.replace(',', '')):,}" for k, v in stats.items()]

    def rss_kb() -> int:
        text = Path("/proc/self/status").read_text()
        return int(next(ln for ln in text.splitlines() if ln.startswith("VmRSS")).split()[1])

    try:  # the library the sqlite3 module uses (loaded already: the same copy)
        lib = ctypes.CDLL("libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        out.append(f"SQLite memory in use {lib.sqlite3_memory_used() / 1e6:.1f} MB "
                   f"(peak {lib.sqlite3_memory_highwater(0) / 1e6:.1f} MB)")  # fmt: skip
    except (OSError, AttributeError):
        out.append("SQLite memory: libsqlite3.so.0 not found")
    before = rss_kb()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out.append(f"malloc_trim(0): VmRSS {before / 1024:.1f} -> {rss_kb() / 1024:.1f} MB")
    return out


if __name__ == "__main__":
    main()
