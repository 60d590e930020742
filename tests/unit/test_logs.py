"""One log stream: with `format: json` every line of the process - the gateway's own and every
library's (pymodbus, the MQTT client, asyncio, urllib3, warnings, threads) - is one JSON object with
`logger`, `level`, `event` and `timestamp`; pymodbus's frame dumps only at debug; repeats collapsed
with a count; no line over the cap."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pymodbus import logging as pymodbus_logging

from gateway.ops.logfilter import LINE_MAX, REPEAT_BURST
from gateway.ops.logs import LIBRARIES, LineHandler, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A log stream for the test; the process's logging is as before afterwards."""
    root = logging.getLogger()
    saved = (
        structlog.get_config(),
        root.level,
        {n: logging.getLogger(n).level for n in LIBRARIES},
        (sys.excepthook, threading.excepthook, sys.unraisablehook),
    )
    out = io.StringIO()
    yield out
    for h in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(h)
        h.close()
    logging.captureWarnings(False)
    config, level, libraries, hooks = saved
    structlog.configure(**config)
    root.setLevel(level)
    for name, lib_level in libraries.items():
        logging.getLogger(name).setLevel(lib_level)
    sys.excepthook, threading.excepthook, sys.unraisablehook = hooks


Log: Any = pymodbus_logging.Log  # pymodbus's own logging front (untyped)


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def docs(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line as JSON (fails on a line that is not one JSON object)."""
    parsed = [json.loads(line) for line in lines(out)]
    assert all(isinstance(d, dict) for d in parsed)
    return parsed


def close_stream() -> None:
    """What the end of the process (or a reload) does: the handler writes the repeats it holds."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(h)
        h.close()


def test_a_pymodbus_frame_dump_at_info_is_dropped(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    assert logging.getLogger("pymodbus").getEffectiveLevel() == logging.WARNING
    Log.transport_dump(Log.SEND_DATA, b"\x00\x16\x00\x00\x00\x06\x07\x04\x00\x00\x00\x1c", b"")
    Log.debug("recv: {}", b"\x00\x16\x00\x00\x00\x03\x07\x84\x02", ":hex")
    Log.error("Frame check failed, ignoring!!")  # pymodbus appends its last frames to an error below debug
    (doc,) = docs(stream)
    assert doc["event"] == "Frame check failed, ignoring!!"
    assert ">>>>>" not in stream.getvalue() and "0x16" not in stream.getvalue()


def test_pymodbus_frames_are_lines_of_their_own_at_library_level_debug(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream, library_level="debug")
    Log.transport_dump(Log.SEND_DATA, b"\x00\x16\x00\x00", b"")
    (doc,) = docs(stream)
    assert doc["event"] == "send: 0x0 0x16 0x0 0x0" and doc["level"] == "debug" and doc["logger"] == "pymodbus.logging"


def test_pymodbus_timeout_lines_are_left_to_the_gateway(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    for _ in range(5):
        Log.error("No response received after {} retries, continue with next request", 0)
    logging.getLogger("pymodbus.logging").warning("Failed to connect")
    assert [d["event"] for d in docs(stream)] == ["Failed to connect"]


def test_a_library_warning_is_one_json_line(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    logging.getLogger("urllib3.connectionpool").warning("Retrying (%r) after %s", "Retry(total=2)", "a reset")
    logging.getLogger("mqtt").error("failed to receive on socket: %s", ConnectionResetError(104, "reset"))
    logging.getLogger("influxdb_client.client.write_api").info("chatter below warning")
    first, second = docs(stream)
    assert {"logger", "level", "event", "timestamp"} <= set(first)
    assert first["logger"] == "urllib3.connectionpool" and first["level"] == "warning"
    assert first["event"] == "Retrying ('Retry(total=2)') after a reset"
    assert first["timestamp"].endswith("Z")
    assert second["logger"] == "mqtt" and second["level"] == "error" and "failed to receive" in second["event"]


def test_an_exception_from_a_library_is_one_json_line(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)

    async def fails() -> None:
        raise ValueError("nobody awaited me")

    async def main() -> None:
        task = asyncio.ensure_future(fails())
        await asyncio.wait([task])
        del task
        gc.collect()  # asyncio logs "Task exception was never retrieved" when the task is collected

    asyncio.run(main())
    (doc,) = docs(stream)
    assert doc["logger"] == "asyncio" and doc["level"] == "error"
    assert doc["event"].startswith("Task exception was never retrieved")
    assert "ValueError: nobody awaited me" in doc["exception"]
    assert len(lines(stream)) == 1


def test_thread_errors_warnings_and_bad_records_are_json_too(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    worker = threading.Thread(target=lambda: 1 / 0, name="worker")
    worker.start()
    worker.join()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)
        warnings.warn("a deprecated call", UserWarning, stacklevel=1)
    # A library's bad format arguments (straight to the gateway's handler: pytest's own would raise).
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, LineHandler)]
    handler.handle(logging.LogRecord("can", logging.WARNING, __file__, 1, "%d frames", ("not a number",), None))
    thread, warning, bad = docs(stream)
    assert thread["thread"] == "worker" and "ZeroDivisionError" in thread["exception"]
    assert warning["logger"] == "py.warnings" and "a deprecated call" in warning["event"]
    assert bad["event"] == "log record could not be formatted" and bad["logger"] == "can" and bad["timestamp"]


def test_repeated_messages_are_collapsed_with_a_count(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    for i in range(100):
        logging.getLogger("pymodbus.logging").warning("Failed to connect [Errno 111] attempt %d", i)
    assert len(docs(stream)) == REPEAT_BURST
    close_stream()  # the end of the process: what was held back is written with its count
    *first, last = docs(stream)
    assert len(first) == REPEAT_BURST and all("repeated" not in d for d in first)
    assert last["event"] == "Failed to connect [Errno 111] attempt 99"
    assert last["repeated"] == 100 - REPEAT_BURST - 1  # this line and the 96 before it


def test_the_gateways_own_lines_go_through_the_same_chain(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    log = structlog.get_logger("can.checks")  # the gateway's, not python-can's `can` (pinned at warning)
    log.debug("filtered out")
    for _ in range(10):
        log.info("frame ignored", frame_id=0x7F, bus="can0")
    log.warning("big", payload="z" * 1_300_000)
    docs_ = docs(stream)
    assert [d["event"] for d in docs_] == ["frame ignored"] * REPEAT_BURST + ["big"]
    assert docs_[0]["logger"] == "can.checks" and docs_[0]["bus"] == "can0" and docs_[0]["level"] == "info"
    assert docs_[-1]["truncated"] is True


def test_a_huge_message_yields_a_line_under_the_cap(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    garbage = bytes(range(256)) * 5100  # 1.3 MB, as a garbage-streaming device gave pymodbus
    logging.getLogger("pymodbus.logging").error("extra data: %s", " ".join(hex(b) for b in garbage))
    try:
        raise ValueError(garbage.decode("latin-1"))
    except ValueError:
        logging.getLogger("asyncio").exception("Fatal error: protocol.data_received() call failed.")
    for line in lines(stream):
        assert len(line.encode()) <= LINE_MAX
    big, exc = docs(stream)
    assert big["truncated"] is True and big["event"].startswith("extra data: 0x0 0x1")
    assert exc["truncated"] is True and exc["exception"].startswith("Traceback")


def test_console_format_stays_readable(stream: io.StringIO) -> None:
    configure_logging("info", "console", stream)
    structlog.get_logger("runtime").info("ready", sources=2)
    logging.getLogger("urllib3").warning("Connection pool is full")
    ours, theirs = lines(stream)
    assert "ready" in ours and "sources=2" in ours and not ours.startswith("{")
    assert "Connection pool is full" in theirs and "urllib3" in theirs


def test_a_reload_replaces_the_stream_and_its_levels(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    configure_logging("debug", "json", stream)
    assert sum(isinstance(h, LineHandler) for h in logging.getLogger().handlers) == 1
    assert logging.getLogger("pymodbus").getEffectiveLevel() == logging.WARNING  # the gateway's debug only
    structlog.get_logger("runtime").debug("now shown")
    Log.transport_dump(Log.SEND_DATA, b"\x00\x16", b"")
    assert [d["event"] for d in docs(stream)] == ["now shown"]
    configure_logging("info", "json", stream, library_level="debug")
    assert logging.getLogger("pymodbus").getEffectiveLevel() == logging.DEBUG


def test_an_uncaught_error_and_an_unraisable_one_are_json_lines(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)  # what Python calls for an error that ends it

    class Finalizer:
        def __repr__(self) -> str:
            raise ValueError("no repr either")

    try:
        raise OSError("in a finalizer")
    except OSError as exc:
        args = type(
            "Args",
            (),
            {
                "exc_type": OSError,
                "exc_value": exc,
                "exc_traceback": exc.__traceback__,
                "err_msg": None,
                "object": Finalizer(),
            },
        )
        sys.unraisablehook(args)  # type: ignore[arg-type]
    crash, unraisable = docs(stream)
    assert crash["level"] == "critical" and "RuntimeError: a bug" in crash["exception"]
    assert unraisable["object"] == "<Finalizer>" and "OSError: in a finalizer" in unraisable["exception"]
