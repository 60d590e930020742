"""How one HTTP write outcome decides what happens to a batch of line-protocol points (pure policy).

    2xx             delivered
    5xx, 429, net   retry the whole batch later (Retry-After honoured)
    401, 403        keep the data, retry slowly, alarm (SinkAuthError)
    413             split the batch in halves and write each
    400, 422        split until the rejected points are alone; write the rest; reject those
    other 4xx       keep the data, retry slowly (a configuration error such as an unknown bucket)

`deliver` takes the post function as an argument so the policy is tested without a network.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.errors import SinkError
from gateway.sinks.base import Rejected, SinkAuthError

REASON_MAX = 500  # characters of the server's message kept


@dataclass(frozen=True, slots=True)
class Response:
    """What the server answered: status, body text, Retry-After header (0 status: network error)."""

    status: int
    body: str = ""
    retry_after: str | None = None


class Item(NamedTuple):
    """One line-protocol point to write, and the outbox row it came from."""

    seq: int
    line: str


Post = Callable[[Sequence[Item]], Response]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_reason(body: str) -> str:
    """The server's message: InfluxDB answers `{"code": "invalid", "message": "..."}`."""
    text = body.strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        msg = doc.get("message") or doc.get("error") or doc.get("code")
        if isinstance(msg, str) and msg:
            text = msg
    return text[:REASON_MAX] or "(no message)"


def deliver(items: Sequence[Item], post: Post, first: Response | None = None) -> list[Rejected]:
    """Write `items`; return the points rejected for good, or raise SinkError to retry them all later.

    `first`: the server's answer to a request of all the items already made (not posted again)."""
    if not items:
        return []
    resp = post(items) if first is None else first
    status = resp.status
    if 200 <= status < 300:
        return []
    if status == 0:
        raise SinkError(f"network error: {resp.body}")
    if status >= 500 or status == 429:
        raise SinkError(
            f"server answered {status}: {server_reason(resp.body)}", retry_after=parse_retry_after(resp.retry_after)
        )
    if status in (401, 403):
        raise SinkAuthError(f"server refused the credentials ({status}): {server_reason(resp.body)}")
    if status in (400, 413, 422):
        if len(items) == 1:
            seq, line = items[0]
            return [Rejected(seq, status, server_reason(resp.body), line)]
        half = len(items) // 2
        return deliver(items[:half], post) + deliver(items[half:], post)
    raise SinkError(f"server answered {status}: {server_reason(resp.body)}", retry=False)
