"""The lines of a text capture as python-can's readers take them: numbered, bounded, resumable.

python-can's text readers (`.log`, `.asc`, `.trc`, `.csv`) iterate over a file object and raise on
the first line they cannot parse, which ends their iteration. Given `NumberedLines` instead of the
file, the line that failed is known (`number`, `text`), and iterating the same reader again goes on
at the next line with the header it has already read (base, start time, columns), once the few
lines that reader consumes when it starts (`resume_lines`) are pushed back in front.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO, Any

import can

MAX_LINE = 64 * 1024  # characters; a longer line is a bad line, read in bounded pieces


class LineTooLong(ValueError):
    """A line over MAX_LINE characters: not a frame of any format."""


class UnreadableText(OSError):
    """The file itself cannot be read on (e.g. a damaged or cut-off .gz): no later line can be had."""


class NumberedLines:
    """A text file's lines with their numbers (1-based); lines pushed back come first, unnumbered."""

    def __init__(self, f: IO[str]) -> None:
        self._f = f
        self.number = 0  # of the last line handed out from the file
        self.text = ""  # that line
        self._pushed: list[str] = []
        self._ahead: str | None = None
        self._error: UnreadableText | None = None  # met while looking ahead; raised when that line is due

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._pushed:
            return self._pushed.pop()
        line = self._read()
        if not line:
            raise StopIteration
        self.number += 1
        self.text = line
        if len(line) > MAX_LINE:
            self.text = line[:80]
            raise LineTooLong(f"line longer than {MAX_LINE} characters")
        return line

    def _read(self) -> str:
        if self._error is not None:
            raise self._error
        if self._ahead is not None:
            line, self._ahead = self._ahead, None
            return line
        try:
            line = self._f.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE and not line.endswith("\n"):
                while True:  # the rest of an overlong line, in bounded pieces
                    more = self._f.readline(MAX_LINE)
                    if not more or more.endswith("\n"):
                        break
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableText(f"cannot read on: {exc}") from exc
        return line

    def at_end(self) -> bool:
        if self._pushed or self._error is not None:
            return False
        if self._ahead is None:
            try:
                self._ahead = self._read()
            except UnreadableText as exc:
                self._error = exc
                return False
        return not self._ahead

    def push(self, lines: tuple[str, ...]) -> None:
        self._pushed.extend(reversed(lines))

    def close(self) -> None:
        """python-can's readers close their file when done; the caller owns this one."""


# What each reader consumes from its file when iteration (re)starts, given back so no real line is lost:
# the CSV reader skips a header line; the ASC reader reads header lines up to the first other line (an
# empty one ends it); the TRC reader skips `;` comment lines and parses the first other line itself.
_RESUME: dict[type[Any], tuple[str, ...]] = {
    can.CSVReader: ("timestamp\n",),
    can.ASCReader: ("\n",),
    can.TRCReader: (";\n",),
}


def resume_lines(reader_class: type[Any]) -> tuple[str, ...]:
    """The lines to push back before iterating a reader of this class again."""
    return next((lines for cls, lines in _RESUME.items() if issubclass(reader_class, cls)), ())


class TRCLineReader(can.TRCReader):
    """python-can's TRC reader, except that a line too short for its columns raises (python-can logs a
    warning without the line's place and skips it) so that it is counted as a bad line like any other."""

    def _parse_line(self, line: str) -> can.Message | None:
        if not line.strip() or line.startswith(";"):  # the last header line of a capture without frames
            return None
        cols = tuple(line.split(maxsplit=self._num_columns))
        return self._parse_cols(cols)
