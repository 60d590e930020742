"""Real peers for tests: Mosquitto and VictoriaMetrics on free loopback ports, started and stopped here."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, free_udp_port
from tests.support.waits import wait_for

__all__ = ["Mosquitto", "VictoriaMetrics", "free_port", "free_udp_port", "wait_port"]


def wait_port(port: int, timeout: float = 30.0) -> None:
    def connects() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    wait_for(connects, timeout, f"something listening on 127.0.0.1:{port}", retry_on=(OSError,))


def _binary(name: str, *extra: str) -> str:
    found = shutil.which(name) or next((p for p in extra if Path(p).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run the README's test command (make test), which installs it")
    return found


@dataclass
class Mosquitto:
    """A mosquitto broker on a free loopback port, with persistence in `workdir` (survives restarts)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = ""
    tls: dict[str, Path] | None = None  # {"ca": ..., "cert": ..., "key": ...}: a TLS listener on tls_port
    require_certificate: bool = False  # TLS listener: clients must present a certificate signed by the CA
    users: dict[str, str] | None = None  # user → password: anonymous clients refused
    tls_port: int = field(default_factory=free_port)

    def _listeners(self) -> str:
        text = f"listener {self.port} 127.0.0.1\n"
        if self.tls is not None:
            text += (
                f"listener {self.tls_port} 127.0.0.1\n"
                f"cafile {self.tls['ca']}\ncertfile {self.tls['cert']}\nkeyfile {self.tls['key']}\n"
                f"require_certificate {'true' if self.require_certificate else 'false'}\n"
            )
        if self.users is None:
            return text + "allow_anonymous true\n"
        pw = self.workdir / "passwd"
        pw.write_text("")
        exe = _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        for user, password in self.users.items():
            subprocess.run([exe, "-b", str(pw), user, password], check=True, capture_output=True)
        return text + f"allow_anonymous false\npassword_file {pw}\n"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            self._listeners()
            + f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to a user that cannot read tmp dirs
            + "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"{self.extra_conf}"
        )
        exe = _binary("mosquitto", "/usr/sbin/mosquitto")
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(self.workdir / "mosquitto.log").open("ab")
        )
        wait_port(self.port)
        if self.tls is not None:
            wait_port(self.tls_port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class VictoriaMetrics:
    """VictoriaMetrics on a free loopback port; accepts InfluxDB v2 writes at /api/v2/write."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        self.workdir.mkdir(parents=True, exist_ok=True)
        exe = _binary("victoria-metrics", "/usr/bin/victoria-metrics")
        self.proc = subprocess.Popen(
            [
                exe,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir}/data",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "vm.log").open("ab"),
        )
        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                return bool(r.status == 200)

        # A start on a busy machine can take a while.
        wait_for(healthy, 60, "victoria-metrics healthy", self.proc, step=0.1, retry_on=(OSError,))
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def flush(self) -> None:
        """Make recent writes searchable (VictoriaMetrics buffers ingested rows for about a second)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30) as r:
            r.read()

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, object]]:
        """Every stored series with its values and timestamps (ms), via /api/v1/export (JSON lines)."""
        import json
        import urllib.parse

        self.flush()
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=30) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
