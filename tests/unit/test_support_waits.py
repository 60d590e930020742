"""The tests' one wait helper: returns what the condition gave, fails naming what it waited for, and
fails at once (not at the deadline) when the process or task under test has ended."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waits import await_for, holds_for, wait_for


def exited(code: int, stderr: str) -> subprocess.Popen[bytes]:
    """A process that wrote `stderr` and ended with `code` (already waited for)."""
    script = f"import sys; sys.stderr.write({stderr!r}); sys.exit({code})"
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    proc.wait(60)
    return proc


def test_wait_for_returns_the_first_true_value() -> None:
    looks = iter([None, 0, "", [], "found"])
    assert wait_for(lambda: next(looks), 60, "the value", step=0) == "found"


def test_wait_for_fails_naming_what_and_what_was_seen() -> None:
    with pytest.raises(AssertionError, match=r"the answer: not reached within 0.2 s; saw 41"):
        wait_for(lambda: False, 0.2, "the answer", detail=lambda: "saw 41")


def test_wait_for_fails_at_once_with_the_exit_code_and_stderr_tail() -> None:
    proc = exited(3, "boom: the config is wrong\n")
    with pytest.raises(AssertionError) as err:
        wait_for(lambda: False, 3600, "the daemon ready", proc)  # an hour: only the exit can end it
    assert "waiting for the daemon ready: the process exited with code 3" in str(err.value)
    assert "boom: the config is wrong" in str(err.value)


def test_wait_for_reads_the_stderr_tail_from_a_log_file(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("x" * 10_000 + "the last line\n")
    proc = exited(1, "")
    with pytest.raises(AssertionError, match="code 1") as err:
        wait_for(lambda: False, 3600, "rows", proc, log=log)
    assert str(err.value).endswith("the last line\n") and "x" * 3500 not in str(err.value)


def test_wait_for_still_sees_a_condition_the_process_met_before_it_exited() -> None:
    assert wait_for(lambda: "written", 3600, "the file", exited(0, "")) == "written"


def test_wait_for_retries_the_exceptions_it_is_told_mean_not_yet() -> None:
    looks = iter([OSError("refused"), OSError("refused"), "up"])

    def look() -> str:
        item = next(looks)
        if isinstance(item, Exception):
            raise item
        return item

    assert wait_for(look, 60, "the port", step=0, retry_on=(OSError,)) == "up"
    with pytest.raises(ValueError, match="a bug"):
        wait_for(lambda: int("a bug"), 60, "a number")  # an exception not listed is not "not yet"


async def test_await_for_takes_plain_and_async_conditions() -> None:
    box: list[int] = []

    async def filled() -> list[int]:
        return box

    loop = asyncio.get_running_loop()
    loop.call_soon(box.append, 7)
    assert await await_for(filled, 60, "the box filled") == [7]
    assert await await_for(lambda: len(box), 60, "the box filled") == 1


async def test_await_for_fails_at_once_when_the_task_under_test_ends() -> None:
    async def crashes() -> None:
        raise RuntimeError("the source crashed")

    task = asyncio.create_task(crashes())
    with pytest.raises(RuntimeError, match="the source crashed"):
        await await_for(lambda: False, 3600, "a batch", task=task)

    async def returns() -> int:
        return 5

    task2 = asyncio.create_task(returns())
    with pytest.raises(AssertionError, match=r"waiting for a batch: the task under test ended early \(returned 5\)"):
        await await_for(lambda: False, 3600, "a batch", task=task2)


def test_holds_for_runs_the_check_until_the_span_ends_and_fails_at_the_first_breach() -> None:
    seen: list[int] = []
    assert holds_for(lambda: seen.append(1), 0.2, step=0.05) == len(seen) >= 2
    calls = 0

    def breaks_on_the_third_call() -> None:
        nonlocal calls
        calls += 1
        assert calls < 3, "the bound broke"

    with pytest.raises(AssertionError, match="the bound broke"):
        holds_for(breaks_on_the_third_call, 60.0, step=0.01)
    assert calls == 3
