"""`scripts/under-load.sh` (what `scripts/test.sh --under-load` and `make test-load` run): pytest N times in
a row while one busy-loop process per CPU runs; the busy loops end with the script; any failed run fails it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "under-load.sh"

# Run by the script's pytest: records the script's busy-loop children (those of the nearest ancestor
# that has any: the script, whether the test runs in pytest itself or in one of its parallel workers, and
# even when the suite itself runs under the script).
PROBE = """
import os
from pathlib import Path


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def busy_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = parent_of(int(entry.name))
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"while True: pass" in cmdline:
            found.append(int(entry.name))
    return found


def busy_siblings() -> list[int]:
    pid = os.getppid()
    while pid > 1:
        found = busy_children(pid)
        if found:
            return found
        pid = parent_of(pid)
    return []


def test_probe() -> None:
    pids = busy_siblings()
    with open(os.environ["PROBE_OUT"], "a") as f:
        f.write(" ".join(map(str, sorted(pids))) + "\\n")
    assert os.environ.get("PROBE_FAIL") != "1"
"""


def run(tmp_path: Path, *args: str, fail: bool = False) -> tuple[subprocess.CompletedProcess[str], list[list[int]]]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    out = tmp_path / "probe.txt"
    env = {**os.environ, "PROBE_OUT": str(out), "PROBE_FAIL": "1" if fail else "0"}
    # One parallel worker (as the suite runs, without starting one per CPU for a single test).
    argv = ["bash", str(SCRIPT), *args, str(tmp_path / "test_probe.py"), "-q", "-p", "no:cacheprovider", "-n", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seen = [[int(p) for p in line.split()] for line in out.read_text().splitlines()] if out.exists() else []
    return result, seen


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_every_run_sees_one_busy_loop_per_cpu_and_they_end_with_the_script(tmp_path: Path) -> None:
    result, seen = run(tmp_path, "--repeat", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 2 run(s) passed" in result.stdout
    assert len(seen) == 2  # pytest ran twice
    cpus = len(os.sched_getaffinity(0))  # what nproc counts
    assert [len(pids) for pids in seen] == [cpus, cpus]  # the same busy loops, one per CPU, during each run
    assert seen[0] == seen[1]
    assert not [pid for pid in seen[0] if alive(pid)]  # stopped on exit


def test_a_failed_run_fails_the_script_and_still_stops_the_busy_loops(tmp_path: Path) -> None:
    result, seen = run(tmp_path, "--repeat=1", fail=True)
    assert result.returncode == 1
    assert "1 of 1 run(s) failed" in result.stdout
    assert len(seen) == 1 and seen[0]
    assert not [pid for pid in seen[0] if alive(pid)]


def test_a_bad_repeat_count_is_a_usage_error(tmp_path: Path) -> None:
    result, seen = run(tmp_path, "--repeat", "often")
    assert result.returncode == 2 and "--repeat" in result.stderr
    assert seen == []  # nothing ran
