"""What every scenario shares: options, the gateway subprocess on a generated config, and its store."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import free_port
from bench.proc import Measured, NotifySocket, python, scrape, spawn


@dataclass
class Options:
    runs: int = 3
    quick: bool = False
    work: Path = Path("/tmp/bench")
    rates: list[int] = field(default_factory=list)
    duration: float | None = None


# `--set KEY=VALUE` of `python -m bench`: applied to every generated gateway config.
OVERRIDES: list[tuple[str, Any]] = []


def parse_override(text: str) -> tuple[str, Any]:
    """`store.commit_interval=0.005` -> ("store.commit_interval", 0.005); a value that is not JSON is a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. store.commit_interval=0.005")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_override(doc: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key; `sources.K` sets K on every source, `sinks.K` on every sink."""
    head, _, rest = key.partition(".")
    if head in ("sources", "sinks") and rest and "." not in rest:
        items = doc.get(head) or []
        for item in items if isinstance(items, list) else items.values():
            item[rest] = value
        return
    node = doc
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    for key, value in OVERRIDES:
        apply_override(doc, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML: no YAML writer needed
    return path


def base_config(work: Path, *, site: str = "bench", http_port: int | None = None) -> dict[str, Any]:
    return {
        "site": {"name": site, "profiles_dir": str(work / "profiles"), "dbc_dir": str(work / "dbc")},
        "sources": [],
        "sinks": {},
        "store": {"path": str(work / "gateway.db")},  # the defaults (commit_interval 0.02)
        "logging": {"level": "warning", "format": "json"},
        "http": {"host": "127.0.0.1", "port": http_port or free_port()},
    }


def mqtt_sink(port: int) -> dict[str, Any]:
    return {"type": "mqtt", "host": "127.0.0.1", "port": port, "tls": False, "prefix": "bench"}


def influx_sink(url: str) -> dict[str, Any]:
    return {"type": "influxdb", "url": url, "org": "bench", "bucket": "bms", "token": "bench"}


class Gateway:
    """`python -m gateway run -c cfg` as a measured subprocess, with $NOTIFY_SOCKET for READY=1."""

    def __init__(self, cfg: Path, work: Path, name: str = "gateway") -> None:
        self.cfg = cfg
        self.doc = json.loads(cfg.read_text())
        self.http_port = int(self.doc.get("http", {}).get("port", 0))
        self.notify = NotifySocket(work / f"{name}.notify")
        self.t_spawn = time.monotonic()
        self.proc: Measured = spawn(
            python("-m", "gateway", "run", "-c", str(cfg)),
            name,
            work / f"{name}.log",
            env={"NOTIFY_SOCKET": str(self.notify.path)},
        )

    def wait_ready(self, timeout: float = 60.0) -> float | None:
        """Seconds from spawn to READY=1 (None if it never came: falls back to /metrics answering)."""
        at = self.notify.wait_ready(timeout if self.proc.alive() else 0)
        if at is not None:
            return at - self.t_spawn
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.alive() and not scrape(self.http_port, 0.5):
            time.sleep(0.1)
        return None

    def metrics(self) -> dict[str, float]:
        return scrape(self.http_port)

    def stop(self, timeout: float = 60.0) -> int:
        rc = self.proc.stop(timeout)
        self.notify.close()
        return rc

    @property
    def store(self) -> Path:
        return Path(self.doc["store"]["path"])


def store_counts(path: Path, since_ns: int = 0, until_ns: int | None = None) -> dict[str, Any]:
    """Samples in the store (all, and with good quality), each source's cycle start times (the first
    sample's timestamp of each batch, ns) and each consumer's state. Counts the rows' columns directly
    (`gateway.store.codec.summary`) rather than building Sample objects: millions of samples stay quick."""
    import sqlite3

    from gateway.store.codec import summary
    from gateway.store.outbox import Outbox

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    good = total = 0
    starts: dict[str, list[int]] = {}
    try:
        q = "SELECT source, payload FROM batches WHERE kind='samples' AND ts >= ? AND ts <= ? ORDER BY seq"
        for source, payload in db.execute(q, (since_ns, until_ns or 2**63 - 1)):
            row = summary(payload)
            total += row.points
            good += row.good
            if row.first_ts is not None:
                starts.setdefault(source, []).append(row.first_ts)
    finally:
        db.close()
    ob = Outbox(path)
    try:
        consumers = {c.name: c for c in ob.consumers()}
    finally:
        ob.db.close()
    return {"samples": total, "good": good, "consumers": consumers, "starts": starts}


def read_json(path: Path) -> dict[str, Any]:
    for _ in range(50):
        if path.exists() and path.stat().st_size:
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise FileNotFoundError(path)
