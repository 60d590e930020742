"""What a site imports is what it uses: a Modbus-only site loads neither python-can nor cantools (each
check of a protocol runs only when a source has its type), a CAN site still runs the CAN checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "examples"

PROBE = """
import json, sys
from pathlib import Path
from gateway.config.settings import load_config
from gateway.config.checks import check_config
loaded = load_config(Path(sys.argv[1]))
problems = check_config(loaded, {})
print(json.dumps({"problems": len(problems), "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _probe(config: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True)  # fmt: skip
    doc: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def test_a_modbus_site_loads_and_checks_without_the_can_libraries() -> None:
    doc = _probe(EXAMPLES / "modbus-40-racks.yaml")
    assert doc["problems"] == 0
    modules = doc["modules"]
    assert isinstance(modules, list)
    assert "can" not in modules and "cantools" not in modules


def test_a_can_site_still_runs_the_can_checks() -> None:
    doc = _probe(EXAMPLES / "can-site.yaml")
    assert doc["problems"] == 0
    modules = doc["modules"]
    assert isinstance(modules, list)
    assert "cantools" in modules and "can" in modules
