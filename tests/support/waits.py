"""The one way a test waits: poll a condition until it holds, with a generous deadline.

The deadline only stops a hung test (a loaded machine is slow); it is never a timing check. A wait
fails loudly: the message names what was awaited, and when the process under test has exited, the
wait fails at once with its exit code and the tail of its stderr instead of running out the clock."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")

STEP = 0.05  # seconds between two looks at the condition
TAIL = 3000  # characters of the process's stderr a failure shows


def _stderr_tail(proc: subprocess.Popen[Any], log: Path | None) -> str:
    if log is not None:
        return log.read_text(errors="replace")[-TAIL:] if log.exists() else ""
    stream = proc.stderr
    if stream is None:
        return ""
    try:
        text = stream.read()
    except (OSError, ValueError):  # closed already
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text)[-TAIL:]


def _give_up(
    what: str,
    timeout: float,
    past_deadline: bool,
    proc: subprocess.Popen[Any] | None,
    log: Path | None,
    task: asyncio.Future[Any] | None,
    detail: Callable[[], object] | None,
) -> None:
    """Raise if the wait is over without the condition: the process or task under test ended, or time ran out."""
    seen = "" if detail is None else f"; {detail()}"
    if proc is not None and proc.poll() is not None:
        tail = _stderr_tail(proc, log)
        code = proc.returncode
        raise AssertionError(f"waiting for {what}: the process exited with code {code}{seen}; stderr tail:\n{tail}")
    if task is not None and task.done():
        result = task.result()  # raises what the task raised
        raise AssertionError(f"waiting for {what}: the task under test ended early (returned {result!r}){seen}")
    if past_deadline:
        raise AssertionError(f"{what}: not reached within {timeout:g} s{seen}")


def wait_for(
    pred: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    proc: subprocess.Popen[Any] | None = None,
    step: float = STEP,
    *,
    log: Path | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
) -> T:
    """Call `pred()` until it returns something true, and return that.

    `proc`: the process under test; if it exits first, fail at once with its exit code and stderr tail
    (read from `log` when its stderr went to that file). `retry_on`: exceptions of `pred` that mean
    "not yet" (e.g. a page redrawn under us). `detail()`: what a failure shows besides `what` (e.g. what
    was seen instead)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = pred()
        except retry_on:
            result = None
        if result:
            return result
        _give_up(what, timeout, time.monotonic() > deadline, proc, log, None, detail)
        time.sleep(step)


def holds_for(check: Callable[[], None], seconds: float, step: float = 0.5) -> int:
    """Run `check` (which asserts) every `step` seconds for `seconds`: for what must stay true over a
    span of time (a daemon that keeps answering, a bound that keeps holding), never a wait for a
    condition. Returns how many times it ran (at least once)."""
    end = time.monotonic() + seconds
    runs = 0
    while True:
        check()
        runs += 1
        if time.monotonic() >= end:
            return runs
        time.sleep(step)


@overload
async def await_for(
    pred: Callable[[], Awaitable[T | None]],
    timeout: float = 60.0,
    what: str = "condition",
    proc: subprocess.Popen[Any] | None = None,
    step: float = STEP,
    *,
    log: Path | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
    task: asyncio.Future[Any] | None = None,
) -> T: ...


@overload
async def await_for(
    pred: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    proc: subprocess.Popen[Any] | None = None,
    step: float = STEP,
    *,
    log: Path | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
    task: asyncio.Future[Any] | None = None,
) -> T: ...


async def await_for(
    pred: Callable[[], Any],
    timeout: float = 60.0,
    what: str = "condition",
    proc: subprocess.Popen[Any] | None = None,
    step: float = STEP,
    *,
    log: Path | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
    task: asyncio.Future[Any] | None = None,
) -> T:
    """`wait_for` for a test running on an event loop: the loop keeps running between looks.
    `pred` may be a plain function or return an awaitable (e.g. `asyncio.to_thread(...)`). `task`: the
    task under test (a runtime, a source); if it ends first, fail at once with its exception or result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = pred()
            if inspect.isawaitable(result):
                result = await result
        except retry_on:
            result = None
        if result:
            return result  # type: ignore[no-any-return]
        _give_up(what, timeout, loop.time() > deadline, proc, log, task, detail)
        await asyncio.sleep(step)
