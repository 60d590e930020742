"""Imports every protocol module so they register their profile kinds, checks, sources, sinks and
runtime extensions. One line per module; each module owns its registrations."""

from __future__ import annotations

import gateway.alarms.engine
import gateway.can.source
import gateway.modbus.source
import gateway.ops.heartbeat
import gateway.ops.service
import gateway.sim.source
import gateway.sinks.influx
import gateway.sinks.mqtt  # noqa: F401
