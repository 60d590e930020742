"""The real daemon (`bms-gateway run`) with alarm commands on a real Mosquitto: junk and oversize commands by
the thousand leave its memory and store bounded, and the signed commands sent after them are answered; an
operator's `alarms keygen` and `alarms send` work end to end."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import threading
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.alarms.journal import Journal
from tests.alarms_support import Subscriber, operator_key, publish
from tests.ops_support import http_get, start_gateway, stop, wait_http, wait_log
from tests.servers import Mosquitto, free_port
from tests.support.waits import await_for

TOPIC = "bms/s1/rack-01/alarms/command"
RESULT = f"{TOPIC}/result"
KP = "rack-01:contactor_positive_open"
MB = 1024 * 1024


def write_config(tmp: Path, mqtt_port: int, http_port: int, users: str) -> Path:
    path = tmp / "gateway.yaml"
    path.write_text(f"""\
site: {{name: s1}}
sources:
  - {{type: simulated, name: rack-01, interval: 1, modules: 1, cells_per_module: 4,
     faults: [{{kind: contactor_open, at: 0}}]}}
sinks:
  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}, tls: false}}
store: {{path: {tmp / "store.db"}}}
http: {{port: {http_port}}}
runtime: {{grace_period: 10}}
alarms:
  overrides: {{contactor_positive_open: {{on_delay: 0}}}}
  commands: {{enabled: true, users: {users}}}
""")  # fmt: skip
    return path


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    assert match is not None
    return int(match.group(1)) / 1024


def store_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("store.db*"))


def counters(port: int) -> dict[str, float]:
    """Commands read and refused, and dropped unread, from the daemon's /metrics."""
    _, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    out = {"refused": 0.0, "dropped": 0.0}
    for line in body.splitlines():
        m = re.match(r'bms_gateway_alarm_commands_total\{action="[^"]*",result="(invalid|denied)"\} (\S+)', line)
        if m:
            out["refused"] += float(m.group(2))
        m = re.match(r"bms_gateway_alarm_commands_dropped_total\{[^}]*\} (\S+)", line)
        if m:
            out["dropped"] += float(m.group(1))
    return out


class RssWatch:
    """Samples a process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


async def flood(port: int, payloads: list[bytes], publishers: int = 4) -> None:
    """Publish every payload (QoS 1) on the command topic from several clients at once."""

    async def one(n: int) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"flood-{n}", max_queued_outgoing_messages=0) as c:
            for p in payloads[n::publishers]:
                await c.publish(TOPIC, p, qos=1)

    async with asyncio.TaskGroup() as tg:
        for n in range(publishers):
            tg.create_task(one(n))


def flood_payloads() -> tuple[list[bytes], int]:
    """2,000 junk payloads (bytes of many sizes) and 500 oversize commands, and how many of them reach the
    gateway: the broker keeps from it what is over its maximum packet size (4 x 16 kB + 4 kB)."""
    rng = random.Random(13)
    sizes = [16, 1000, 15_000, 60_000, 200_000]
    junk = [rng.randbytes(sizes[i % len(sizes)]) for i in range(2000)]
    oversize = [json.dumps({"action": "ack", "alarm_id": KP, "user": "alice", "id": f"big-{i}",
                            "reason": "x" * (20_000 if i % 2 else 200_000)}).encode() for i in range(500)]  # fmt: skip
    delivered = sum(1 for p in junk + oversize if len(p) < 4 * 16384)
    return junk + oversize, delivered


@pytest.mark.timeout(900)
async def test_a_flood_of_junk_and_oversize_commands_stays_bounded_and_later_commands_are_answered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # Issue 13 (2, 3): 2,500 junk payloads took RSS from 72 MB to 560 MB, oversize reasons added 306 MB to
    # the store, NaN and deep nesting crashed the listener and the commands queued behind them were lost.
    alice = operator_key(tmp_path, "alice")
    http_port = free_port()
    cfg = write_config(
        tmp_path, mosquitto.port, http_port, f'{{alice: {{public_key: "{alice.public}", all_alarms: true}}}}'
    )
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/metrics", proc)
        wait_log(tmp_path, "alarm commands: listening", proc)
        async with Subscriber(mosquitto.port, RESULT, client_id="results") as results:
            nan = b'{"action": "ack", "alarm_id": "rack-01:x", "user": "alice", "id": "nan", "reason": NaN}'
            await flood(mosquitto.port, [nan, b"[" * 5_000 + b"]" * 5_000], publishers=1)
            await await_for(lambda: len(results.messages) == 2, what="replies to NaN and deep nesting")
            assert [(p["ok"], p["code"]) for p in results.payloads(RESULT)] == [
                (False, "non_finite"),
                (False, "too_deep"),
            ]
            assert results.payloads(RESULT)[0]["id"] == "nan"

            payloads, delivered = flood_payloads()
            before = store_bytes(tmp_path)
            baseline = rss_mb(proc.pid)
            with RssWatch(proc.pid) as watch:
                await flood(mosquitto.port, payloads)
                expected = 2 + delivered  # every message that reached the gateway is refused or dropped, counted
                await await_for(lambda: sum(counters(http_port).values()) >= expected, timeout=300, what="flood read")
            assert sum(counters(http_port).values()) == expected, counters(http_port)
            grown = (store_bytes(tmp_path) - before) / 1024
            print(f"flood: RSS {baseline:.0f} MB before, peak {watch.peak:.0f} MB; {delivered} of {len(payloads)} "
                  f"reached the gateway ({counters(http_port)}); store +{grown:.0f} kB")  # fmt: skip
            assert watch.peak < 200, f"RSS peaked at {watch.peak:.0f} MB"

            # Signed commands sent after the flood: every one is answered.
            n_before = len(results.messages)
            for i in range(10):
                doc = alice.sign("alice", "s1", "rack-01", action="ack", alarm_id="*", reason="after", id=f"ok-{i}")
                await publish(mosquitto.port, TOPIC, doc)
            answered = lambda: {p.get("id") for p in results.payloads(RESULT)[n_before:]}  # noqa: E731
            await await_for(lambda: {f"ok-{i}" for i in range(10)} <= answered(), what="answers after the flood")
            after = [p for p in results.payloads(RESULT) if str(p.get("id")).startswith("ok-")]
            # The first acknowledges the contactor alarm; the others find nothing left to acknowledge: answered all.
            assert all(p["verified"] is True and p["key_id"] == alice.key_id for p in after), after
            assert store_bytes(tmp_path) - before < 5 * MB
    finally:
        assert stop(proc) == 0, (tmp_path / "gateway.log").read_text()[-3000:]
    j = Journal(tmp_path / "store.db", readonly=True)
    kinds = [e.body.get("type") for e in j.entries()]
    j.close()
    flood_entries = [k for k in kinds if k in ("command_refused", "commands_refused", "command_dropped")]
    assert 3 <= len(flood_entries) <= 20, kinds  # bursts: the first of each kind in full, then their counts
    assert kinds.count("command") == 10


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "alarms", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_alarms_keygen_and_send_end_to_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    code, out, _ = await run_cli("keygen", str(tmp_path / "alice.key"), "--user", "alice")
    assert code == 0 and (tmp_path / "alice.key").stat().st_mode & 0o777 == 0o600
    public = re.search(r"^public key: (\S+)", out, re.M)
    assert public is not None and (tmp_path / "alice.key.pub").read_text().strip() == public.group(1)
    code, out, _ = await run_cli("keygen", str(tmp_path / "bob.secret"), "--user", "bob", "--hmac")
    assert code == 0 and "key id: hmac:" in out
    code, _, err = await run_cli("keygen", str(tmp_path / "bob.secret"), "--hmac")
    assert code == 2 and "exists" in err  # never overwritten
    mallory = operator_key(tmp_path, "mallory")

    users = f'{{alice: {{public_key: "{public.group(1)}"}}, bob: {{secret_file: {tmp_path / "bob.secret"}}}}}'
    cfg = write_config(tmp_path, mosquitto.port, free_port(), users)
    proc = start_gateway(cfg, tmp_path)
    try:
        async with Subscriber(mosquitto.port, "bms/s1/rack-01/alarms/events", client_id="events") as events:
            await await_for(lambda: "active_unack" in events.events("bms/s1/rack-01/alarms/events", KP), what="alarm")
            wait_log(tmp_path, "alarm commands: listening", proc)
            code, out, err = await run_cli("send", "ack", KP, "--user", "alice", "--key", str(tmp_path / "alice.key"),
                                           "--reason", "cell checked", "-c", str(cfg))  # fmt: skip
            reply: dict[str, Any] = json.loads(out)
            assert code == 0, err
            assert reply["ok"] is True and reply["verified"] is True and reply["key_id"].startswith("ed25519:")
            code, out, err = await run_cli("send", "shelve", KP, "--user", "bob", "--key", str(tmp_path / "bob.secret"),
                                           "--reason", "maintenance", "--duration", "600", "--host", "127.0.0.1",
                                           "--port", str(mosquitto.port), "--no-tls", "--site", "s1")  # fmt: skip
            assert code == 0, err
            assert json.loads(out)["key_id"].startswith("hmac:")
            code, out, _ = await run_cli("send", "unshelve", KP, "--user", "alice", "--key", str(mallory.path),
                                         "--reason", "forged", "-c", str(cfg))  # fmt: skip
            assert code == 1 and json.loads(out)["code"] == "bad_signature"
            await await_for(lambda: "shelved" in events.events("bms/s1/rack-01/alarms/events", KP), what="shelved")
    finally:
        assert stop(proc) == 0
    code, out, _ = await run_cli("history", "-c", str(cfg))
    assert code == 0
    assert re.search(r"active_unack -> active_ack: .* by alice \(cell checked\)", out)
    assert re.search(r"-- command_refused .*\"code\": \"bad_signature\"", out)
    keyed = [json.loads(line) for line in (await run_cli("export", "-c", str(cfg)))[1].splitlines()]
    commands = [(e["user"], e["key_id"][:5], e["verified"]) for e in keyed if e["type"] == "command"]
    assert commands == [("alice", "ed255", True), ("bob", "hmac:", True)]
