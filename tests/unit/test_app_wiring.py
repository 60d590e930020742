"""The composition root: every name resolves, and `validate` / `schema` import no network client.

The import checks run the CLI in a fresh interpreter and read its `sys.modules`: a module imported
once stays there, whatever code imported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

from gateway import app
from gateway.config.settings import SinkConfig, SourceConfig

ROOT = Path(__file__).resolve().parents[2]
MIXED_SITE = ROOT / "config" / "examples" / "mixed-site.yaml"  # modbus, can and both network sinks

# Network clients and the HTTP server: what running the daemon needs, and a config check must not load.
NETWORK = ("aiomqtt", "paho", "influxdb_client", "pymodbus.client", "gateway.ops.httpserver")

PROBE = """
import contextlib, io, json, os, sys
from gateway.app import load
from gateway.cli.main import main
for ref in filter(None, os.environ.get("PROBE_LOAD", "").split(",")):
    load(ref)
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": len(out.getvalue()), "modules": sorted(sys.modules)}))
"""


def modules_after(*args: str, load: tuple[str, ...] = ()) -> tuple[int, int, set[str]]:
    """Run `bms-gateway <args>` in a fresh interpreter (after loading the `load` names): its exit
    code, output size and loaded modules."""
    env = {**os.environ, "PROBE_LOAD": ",".join(load)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], report["out"], set(report["modules"])


def network_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NETWORK))


def test_validate_imports_no_network_client() -> None:
    code, _, modules = modules_after("validate", "-c", str(MIXED_SITE))
    assert code == 0
    # The checks that need the profiles did run (a DBC and a Modbus read plan were compiled) ...
    assert {"gateway.sources.can.checks", "gateway.sources.modbus.checks", "gateway.sinks.transport"} <= modules
    # ... and no client came with them.
    assert network_modules(modules) == []
    assert "gateway.runtime.core" not in modules


def test_schema_imports_no_network_client() -> None:
    code, size, modules = modules_after("schema")
    assert code == 0 and size > 1000  # the schema was printed
    assert network_modules(modules) == []


def test_the_probe_sees_the_clients_the_daemon_loads() -> None:
    """The same probe sees each client once the code that uses it is loaded (the checks above can fail)."""
    code, _, modules = modules_after("catalog", load=(*app.SINKS.values(), app.SOURCES["modbus"], *app.RUNTIME_PARTS))
    assert code == 0
    assert {"aiomqtt", "influxdb_client", "pymodbus.client", "gateway.ops.httpserver"} <= modules


def _types(union: object) -> set[str]:
    members = typing.get_args(typing.get_args(union)[0])  # Annotated[A | B, Field(...)] -> (A, B)
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_every_configurable_type_has_a_builder() -> None:
    assert set(app.SOURCES) == _types(SourceConfig)
    assert set(app.SINKS) == _types(SinkConfig)


def test_every_name_in_the_tables_resolves() -> None:
    refs = [*app.SOURCES.values(), *app.SINKS.values(), *app.PROFILE_KINDS.values()]
    refs += [*app.CHECKS, *app.RUNTIME_PARTS, *app.DEMO_PARTS]
    for ref in refs:
        assert callable(app.load(ref)), ref
    for protocol in app.PROFILE_KINDS:
        assert app.profile_kind(protocol) is not None
    assert app.profile_kind("profibus") is None
