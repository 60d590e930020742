"""The gateway's small exception tree. Library errors are translated at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.textsafe import printable


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem at a place: `file:line:col: message`."""

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    message: str

    def __str__(self) -> str:
        """One line: control characters of the file name or the message (a DBC's or a YAML key's text)
        escaped, so no problem can forge another line or recolour a terminal."""
        if self.line:
            return f"{printable(self.file)}:{self.line}:{self.col}: {printable(self.message)}"
        return f"{printable(self.file)}: {printable(self.message)}"


class ConfigError(GatewayError):
    """One or more problems in a configuration, profile or DBC file; each names its place."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<config>", 0, 0, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SinkError(GatewayError):
    """A sink could not deliver; `retry` says whether the same data may succeed later."""

    def __init__(self, message: str, *, retry: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
