"""A broker that pushes messages at the MQTT sink's client: the gateway's memory stays bounded and it goes on storing.

The sink never read what its client received, and aiomqtt queued all of it: a broker pushing unsolicited
PUBLISH packets took the gateway to 3.5 GB in 15 s; a real Mosquitto did the same when the sink's
persistent session still held a `#` subscription made under its client id (69 MB to over 1 GB in
about 6 s). Now the sink connects with a clean session (the stale one is dropped), unsubscribes `#`
when it keeps a persistent one, and discards and counts whatever arrives anyway.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.mqtt_flood_support import FloodingBroker, Publisher, rss_kb, session_present, subscribe_and_leave
from tests.ops_support import eventually, http_get, log_events, start_gateway, stop, wait_http
from tests.servers import Mosquitto, free_port
from tests.support.site import write_config
from tests.support.waits import holds_for

FLOOD_SECONDS = 30.0  # the fake broker's flood (the acceptance check)
STALE_SESSION_SECONDS = 10.0  # a real Mosquitto: the old sink passed 200 MB within 3 s
MAX_RSS_KB = 200 * 1024
CLIENT_ID = "bms-gateway-t-mqtt"  # the sink's default: bms-gateway-<site>-<sink name>
UNSOLICITED = "mqtt sink receives messages it never subscribed to: discarded and counted"


def write_site(tmp: Path, mqtt_port: int, http_port: int, extra: str = "") -> Path:
    fast = "batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 1, timeout: 5"
    sink = f"sinks:\n  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}, tls: false, {fast}{extra}}}\n"
    return write_config(tmp, ["rack-a"], http_port=http_port, interval=0.1, grace=10, extra=sink)


def metric(port: int, name: str, labels: str = "") -> float:
    """A sample of the gateway's /metrics (0 when it has none yet)."""
    text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=30)[2]
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def bounded_rss(pid: int, seconds: float) -> int:
    """The highest RSS (kB) of the process, sampled twice a second for `seconds`; fails at the first
    sample over the bound (a flood that is not bounded would take the machine's memory)."""
    peak = 0
    start = time.monotonic()

    def under_bound() -> None:
        nonlocal peak
        rss = rss_kb(pid)
        peak = max(peak, rss)
        assert rss < MAX_RSS_KB, f"RSS {rss // 1024} MB after {time.monotonic() - start:.1f} s"

    holds_for(under_bound, seconds)
    return peak


@pytest.mark.timeout(300)
def test_a_broker_flooding_the_sink_leaves_memory_bounded_and_storing_on(tmp_path: Path) -> None:
    broker = FloodingBroker().start()
    http_port = free_port()
    proc = start_gateway(write_site(tmp_path, broker.port, http_port), tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/healthz", proc)
        eventually(lambda: broker.flood_bytes > 20_000_000, proc)  # the flood has reached the client
        stored = metric(http_port, "bms_gateway_samples_stored_total")
        delivered = broker.delivered("bms/t/")
        sent = broker.flood_bytes
        peak = bounded_rss(proc.pid, FLOOD_SECONDS)
        flood_mb = (broker.flood_bytes - sent) / 1e6
        stored_during = metric(http_port, "bms_gateway_samples_stored_total") - stored
        assert stored_during > 0  # storing went on during the flood
        eventually(lambda: broker.delivered("bms/t/") > delivered, proc)  # and so did delivery
        discarded = metric(http_port, "bms_gateway_mqtt_unsolicited_messages_total", '{sink="mqtt"}')
        assert discarded > 1000
        print(
            f"fake broker flood: {flood_mb:.0f} MB pushed in {FLOOD_SECONDS:.0f} s, {discarded:.0f} messages "
            f"discarded, peak RSS {peak / 1024:.0f} MB, {stored_during:.0f} samples stored meanwhile"
        )
    finally:
        assert stop(proc) == 0
        broker.stop()
    events = log_events(tmp_path)
    warned = [e for e in events if e["event"] == UNSOLICITED]
    assert 1 <= len(warned) <= broker.connects  # one line per connection, not one per message
    assert warned[0]["topic"] == "flood/x" and warned[0]["client_id"] == CLIENT_ID
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("clean_session", [None, False], ids=["default", "persistent"])
def test_a_stale_hash_subscription_under_the_sink_client_id_does_not_flood_it(
    tmp_path: Path, mosquitto: Mosquitto, clean_session: bool | None
) -> None:
    # Another client subscribed `#` under the sink's client id with a persistent session, then left.
    subscribe_and_leave(mosquitto.port, CLIENT_ID)
    publisher = Publisher(mosquitto.port, payload_size=16384, qos=1, rate=1000).start()  # 16 MB/s
    eventually(lambda: publisher.sent > 500, None)
    # The stale session holds a backlog now; the flood goes on once the sink is connected. (Published
    # while the gateway started, the backlog grew with its start-up time: on a loaded machine more than
    # the sink could take in before its unsubscribe timed out, again and again.)
    publisher.pause()
    http_port = free_port()
    extra = "" if clean_session is None else f", clean_session: {str(clean_session).lower()}"
    proc = start_gateway(write_site(tmp_path, mosquitto.port, http_port, extra), tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/healthz", proc)
        eventually(lambda: metric(http_port, "bms_gateway_sink_connected", '{sink="mqtt"}') == 1, proc)
        publisher.resume()
        stored = metric(http_port, "bms_gateway_samples_stored_total")
        delivered = metric(http_port, "bms_gateway_sink_delivered_samples_total", '{sink="mqtt"}')
        published = publisher.sent
        peak = bounded_rss(proc.pid, STALE_SESSION_SECONDS)
        flood_mb = (publisher.sent - published) * 16384 / 1e6
        assert metric(http_port, "bms_gateway_samples_stored_total") > stored
        eventually(
            lambda: metric(http_port, "bms_gateway_sink_delivered_samples_total", '{sink="mqtt"}') > delivered, proc
        )
        discarded = metric(http_port, "bms_gateway_mqtt_unsolicited_messages_total", '{sink="mqtt"}')
        print(
            f"Mosquitto, stale `#` session, clean_session {clean_session}: {flood_mb:.0f} MB published in "
            f"{STALE_SESSION_SECONDS:.0f} s, {discarded:.0f} messages discarded, peak RSS {peak / 1024:.0f} MB"
        )
        if clean_session is False:
            # The session's backlog came in before the `#` was unsubscribed: discarded and counted.
            assert discarded > 0
    finally:
        publisher.stop()
        assert stop(proc) == 0
    if clean_session is None:
        # The gateway's clean session replaced the stale one: no session (and no `#`) is left under its id.
        assert not session_present(mosquitto.port, CLIENT_ID)
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()
