from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import Mosquitto, VictoriaMetrics

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Property tests check results, never speed: hypothesis's per-example deadline (200 ms) and its
# "data generation is slow" check fail on a busy machine (speed is measured in bench/).
settings.register_profile("bms-gateway", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bms-gateway")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "vm").start()
    yield vm
    vm.stop()
