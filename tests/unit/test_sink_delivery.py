"""The HTTP status policy of the InfluxDB sink (pure: the post function is a table of answers)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.errors import SinkError
from gateway.sinks.base import SinkAuthError
from gateway.sinks.delivery import Item, Response, deliver, parse_retry_after, server_reason

ITEMS: list[Item] = [(1, "a x=1"), (1, "b x=2"), (2, "c x=3"), (3, "d x=4"), (3, "e x=5")]


class Server:
    """Answers like InfluxDB: rejects a whole request when it holds a bad line (400) or is too big (413)."""

    def __init__(
        self, bad: set[str] | frozenset[str] = frozenset(), max_lines: int = 1000, status: int | None = None
    ) -> None:
        self.bad = bad
        self.max_lines = max_lines
        self.status = status
        self.stored: list[str] = []
        self.requests = 0

    def __call__(self, items: Sequence[Item]) -> Response:
        self.requests += 1
        if self.status is not None:
            return Response(self.status, '{"code":"x","message":"nope"}', "7")
        if len(items) > self.max_lines:
            return Response(413, '{"code":"request too large","message":"too large"}')
        lines = [line for _, line in items]
        if any(line in self.bad for line in lines):
            return Response(400, '{"code":"invalid","message":"partial write: field type conflict"}')
        self.stored += lines
        return Response(204)


def test_all_delivered_in_one_request() -> None:
    srv = Server()
    assert deliver(ITEMS, srv) == []
    assert srv.stored == [line for _, line in ITEMS]
    assert srv.requests == 1


def test_400_bisects_to_the_rejected_point_and_writes_the_rest_in_order() -> None:
    srv = Server(bad={"c x=3"})
    rejected = deliver(ITEMS, srv)
    assert [(r.seq, r.item, r.status) for r in rejected] == [(2, "c x=3", 400)]
    assert rejected[0].reason == "partial write: field type conflict"
    assert srv.stored == ["a x=1", "b x=2", "d x=4", "e x=5"]


def test_413_splits_until_the_requests_fit() -> None:
    srv = Server(max_lines=2)
    assert deliver(ITEMS, srv) == []
    assert srv.stored == [line for _, line in ITEMS]
    assert srv.requests > 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_retry_with_retry_after(status: int) -> None:
    with pytest.raises(SinkError) as info:
        deliver(ITEMS, Server(status=status))
    assert info.value.retry and info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_keep_the_data(status: int) -> None:
    with pytest.raises(SinkAuthError) as info:
        deliver(ITEMS, Server(status=status))
    assert not info.value.retry


def test_network_error_retries() -> None:
    with pytest.raises(SinkError) as info:
        deliver(ITEMS, lambda items: Response(0, "ConnectionRefusedError"))
    assert info.value.retry


def test_unknown_bucket_is_kept_not_dropped() -> None:
    with pytest.raises(SinkError) as info:
        deliver(ITEMS, lambda items: Response(404, '{"code":"not found","message":"bucket \\"x\\" not found"}'))
    assert not info.value.retry and 'bucket "x" not found' in str(info.value)


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0


def test_server_reason() -> None:
    assert server_reason('{"code":"invalid","message":"bad line"}') == "bad line"
    assert server_reason("plain text") == "plain text"
    assert server_reason("") == "(no message)"
    assert len(server_reason("x" * 5000)) == 500


def test_an_answer_already_had_is_not_posted_again() -> None:
    srv = Server(bad={"c x=3"})
    first = srv(ITEMS)  # the sink's one request of the whole body
    assert first.status == 400
    rejected = deliver(ITEMS, srv, first)
    assert [r.item for r in rejected] == ["c x=3"]
    assert srv.stored == ["a x=1", "b x=2", "d x=4", "e x=5"]
    assert srv.requests == 1 + 4  # [a b], [c d e], [c], [d e]: not the whole batch again
    with pytest.raises(SinkError):
        deliver(ITEMS, Server(), Response(503, "busy"))
