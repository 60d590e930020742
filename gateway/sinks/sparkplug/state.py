"""The edge node's bdSeq across restarts: a small JSON file beside the store, replaced atomically.

Every connect takes the next bdSeq (0..255, wrapping) and writes it before the CONNECT that registers
the NDEATH will with it, so after a `kill -9` and a restart the new NBIRTH (and will) has the bdSeq of
the last one plus one. A file that cannot be read or written is a fault of the world: logged once when
it starts (naming the file) and once when it ends; the bdSeq then goes on in memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger("sink.sparkplug")

BD_SEQ_MODULO = 256


class BdSeqFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: int | None = None  # the bdSeq of the last connection (None: none yet)
        self._loaded = False
        self._failing = False

    def next(self) -> int:
        """The bdSeq of the next connection, kept in the file first."""
        if not self._loaded:
            self._last = self._read()
            self._loaded = True
        bd = 0 if self._last is None else (self._last + 1) % BD_SEQ_MODULO
        self._write(bd)
        self._last = bd
        return bd

    def _read(self) -> int | None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("sparkplug bdSeq file unreadable; bdSeq starts at 0", file=str(self.path), error=str(exc))
            return None
        bd = doc.get("bdSeq") if isinstance(doc, dict) else None
        if type(bd) is not int or not 0 <= bd < BD_SEQ_MODULO:
            log.warning("sparkplug bdSeq file holds no bdSeq 0..255; bdSeq starts at 0", file=str(self.path))
            return None
        return bd

    def _write(self, bd: int) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"bdSeq": bd}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot keep the sparkplug bdSeq; it goes on in memory (a restart may repeat one)",
                    file=str(self.path),
                    error=str(exc),
                )
            return
        if self._failing:
            self._failing = False
            log.info("sparkplug bdSeq kept in its file again", file=str(self.path))
