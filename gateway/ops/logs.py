"""One `configure_logging()`, one log stream: the gateway's own lines (structlog) and every library's
(standard `logging`: pymodbus, the MQTT client, asyncio, influxdb-client, urllib3, python-can, cantools,
warnings, uncaught exceptions) go through one processor chain to stderr: JSON lines when it is no
terminal, console lines when it is. The chain limits repeats and caps lines (`gateway.ops.logfilter`).

Levels: the gateway's loggers log from `level`, the libraries from `library_level` (warning: their
info is chatter, and pymodbus's debug is a dump of every frame). At debug (either) every line is
written; above it repeats are limited. A filtered-out call of the gateway's own costs what
structlog's filtering logger costs: a call of a method that returns.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter

from gateway.ops.logfilter import CappedJSON, EventDict, LibraryRules, RepeatLimiter, cap_fields, shorten

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Top-level loggers of the libraries the gateway uses ("mqtt" is aiomqtt's, which paho logs through).
LIBRARIES = ("pymodbus", "mqtt", "paho", "asyncio", "influxdb_client", "urllib3", "can", "cantools", "py.warnings")

Renderer = Any  # a structlog processor returning the line (str)


class GatewayLoggers:
    """structlog's logger factory: one standard-library logger per name, a child of the root logger
    outside the libraries' tree (the gateway's `can.checks` is not python-can's `can`), at debug (the
    level is structlog's filtering logger's job; this only carries records to the root's handler)."""

    def __init__(self) -> None:
        self._made: dict[str, logging.Logger] = {}

    def __call__(self, *args: Any) -> logging.Logger:
        name = str(args[0]) if args else "gateway"
        logger = self._made.get(name)
        if logger is None:
            logger = logging.Logger(name, logging.DEBUG)
            logger.parent = logging.getLogger()
            self._made[name] = logger
        return logger


_FACTORY = GatewayLoggers()
_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record as one line through the chain. A record the chain drops (a repeat) writes
    nothing; a record that cannot be formatted still writes a line saying so; the repeats held back
    are written when their window has passed and at the end (`close`)."""

    def __init__(
        self, stream: TextIO, formatter: ProcessorFormatter, renderer: Renderer, limiter: RepeatLimiter | None
    ):
        super().__init__(stream)
        self.setFormatter(formatter)
        self.renderer = renderer
        self.limiter = limiter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self._line(record)
            if line is not None:
                self._write(line, record)
            if self.limiter is not None:
                for ed in self.limiter.due():
                    self._write(self._render(ed), record)
        except Exception:
            self.handleError(record)

    def _line(self, record: logging.LogRecord) -> str | None:
        try:
            return self.format(record)
        except structlog.DropEvent:
            return None
        except Exception as exc:  # a library's bad format arguments, an unprintable field: still one line
            ed = {
                "event": "log record could not be formatted",
                "logger": record.name,
                "level": record.levelname.lower(),
                "message": shorten(repr(record.msg), 500),
                "error": repr(exc),
            }
            return self._render(_STAMP(None, "", ed))

    def _render(self, ed: EventDict) -> str:
        return str(self.renderer(None, str(ed.get("level", "info")), ed))

    def _write(self, line: str, record: logging.LogRecord | None) -> None:
        try:
            self.stream.write(line + self.terminator)
            self.flush()
        except Exception:
            if record is not None:
                self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self.limiter is not None:
                for ed in self.limiter.pending():
                    self._write(self._render(ed), None)
                self.limiter = None
        finally:
            self.release()
        super().close()


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, library_level: str = "warning"
) -> None:
    """Route every log line of the process through one chain to `stream` (stderr). Called again (a
    reload), it replaces the previous stream's handler (writing the repeats that one held back)."""
    out = stream if stream is not None else sys.stderr
    threshold, libraries = _LEVELS[level], _LEVELS[library_level]
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    limiter = RepeatLimiter() if min(threshold, libraries) > logging.DEBUG else None  # debug: every line
    renderer: Renderer = structlog.dev.ConsoleRenderer(colors=False) if console else CappedJSON()
    chain: list[Any] = [ProcessorFormatter.remove_processors_meta]
    if not console:  # the console renderer prints a traceback itself; JSON carries it as one field
        chain.append(structlog.processors.format_exc_info)
    chain += [cap_fields, *([limiter] if limiter is not None else []), renderer]
    formatter = ProcessorFormatter(
        processors=chain,
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _STAMP,
            LibraryRules(libraries),
        ],
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(LineHandler(out, formatter, renderer, limiter))
    root.setLevel(libraries)  # the loggers of libraries not named below; the gateway's are apart (GatewayLoggers)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libraries)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            _STAMP,
            ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_FACTORY,
        cache_logger_on_first_use=False,
    )
    sys.excepthook = _uncaught
    threading.excepthook = _thread_uncaught
    sys.unraisablehook = _unraisable


_log = structlog.get_logger("runtime")


def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An exception that ends the process: one log line with its traceback (please report it)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    try:
        _log.critical("unexpected error; the process ends", exc_info=(kind, exc, tb))
    except Exception:
        sys.__excepthook__(kind, exc, tb)


def _thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else None
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    _log.error("unexpected error in a thread", thread=thread, exc_info=exc_info)


def _unraisable(args: Any) -> None:
    """An exception Python could not raise (in a finalizer, a callback): one log line."""
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    where = args.err_msg or "Exception ignored in"
    try:
        obj = repr(args.object)
    except Exception:
        obj = f"<{type(args.object).__name__}>"
    _log.error("unraisable exception", where=where, object=obj, exc_info=exc_info)
