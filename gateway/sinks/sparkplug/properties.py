"""What the edge node says about itself and its devices in their births (pure): `Properties/…` metrics.

NBIRTH: `Properties/Software` (bms-gateway), `Properties/Software Version`, `Properties/Site`.
DBIRTH of a rack that a configured source tags: `Properties/Source` (the source's name),
`Properties/Source Type` (modbus, can, simulated) and `Properties/Profile` when it has one. They are
Strings, sent in births only (they change with a restart or a reload at most).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.sinks.sparkplug.payload import STRING, Metric

FOLDER = "Properties"
SOFTWARE = "bms-gateway"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    source: str
    source_type: str
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    site: str = ""
    version: str = ""
    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)  # by Sparkplug device id


def node_properties(info: NodeInfo, ts_ms: int) -> list[Metric]:
    """The NBIRTH's properties (named, no alias: they never appear in NDATA)."""
    values = {"Software": SOFTWARE, "Software Version": info.version, "Site": info.site}
    return [Metric(STRING, v, ts_ms, None, f"{FOLDER}/{k}") for k, v in values.items() if v]


def device_properties(info: DeviceInfo | None) -> dict[str, str]:
    """Metric name → value of a device's properties (none for a device no source tags)."""
    if info is None:
        return {}
    out = {f"{FOLDER}/Source": info.source, f"{FOLDER}/Source Type": info.source_type}
    if info.profile:
        out[f"{FOLDER}/Profile"] = info.profile
    return out
