"""What the daemon imports is what its site uses: `bms-gateway run` builds the whole command line (every
command group registers its sub-commands) and then the runtime, and neither may pull in the libraries of
a feature the site does not have: python-can and cantools without a CAN source, cryptography without
signed commands (each some 7-14 MB resident, which a 100-rack Modbus site's peak RSS carries)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("can", "cantools", "cryptography", "pymodbus", "aiomqtt")

# The daemon's start-up as `gateway.cli.main` does it, up to the runtime built (nothing is connected).
PROBE = """
import json, sys
from pathlib import Path
from gateway.app import build_runtime
from gateway.cli.main import build_parser
from gateway.config.settings import load_config
build_parser()
runtime = build_runtime(load_config(Path(sys.argv[1])))
runtime.outbox.close()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))))
"""


def _modules_of_a_runtime(tmp_path: Path, sources: str) -> list[str]:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        f"site: {{name: t, profiles_dir: {ROOT / 'config' / 'profiles'}, dbc_dir: {ROOT / 'dbc'}}}\n"
        f"sources:\n{sources}"
        "sinks:\n  mqtt: {type: mqtt, host: 127.0.0.1, port: 1883}\n"
        f"store: {{path: {tmp_path / 'store.db'}}}\n"
        "http: {enabled: false}\n"
    )
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg), ",".join(WATCHED)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True)  # fmt: skip
    found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_a_modbus_daemon_loads_neither_the_can_libraries_nor_cryptography(tmp_path: Path) -> None:
    modbus = "  - {type: modbus, name: rack-01, profile: modbus-generic-rack, host: 127.0.0.1, port: 1502}\n"
    found = _modules_of_a_runtime(tmp_path, modbus)
    assert "pymodbus" in found and "aiomqtt" in found  # what it uses is there: the probe sees the imports
    assert not {"can", "cantools", "cryptography"} & set(found), found


def test_a_can_daemon_loads_the_can_libraries_without_pymodbus(tmp_path: Path) -> None:
    can = "  - {type: can, name: rack-01, profile: can-example-rack, interface: virtual, channel: fp}\n"
    found = _modules_of_a_runtime(tmp_path, can)
    assert "can" in found and "cantools" in found
    assert "pymodbus" not in found and "cryptography" not in found, found
