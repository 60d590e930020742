"""Configuration of the Sparkplug B sink: the broker as for the MQTT sink, plus the Sparkplug identities."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.sinks.config import MqttConnection, UplinkSinkBase

# A Sparkplug id is one topic level: no MQTT wildcard or separator in it.
SPARKPLUG_ID = r"^[^+#/\s]+$"


class SparkplugSinkConfig(MqttConnection, UplinkSinkBase):
    """Sparkplug B 3.0 edge node: NBIRTH/NDEATH for the gateway, one device (DBIRTH/DDATA/DDEATH) per rack."""

    type: Literal["sparkplug"] = "sparkplug"
    group_id: str = Field("bms", pattern=SPARKPLUG_ID, description="Sparkplug group id (the topic's second level)")
    edge_node_id: str | None = Field(
        None, pattern=SPARKPLUG_ID, description="Sparkplug edge node id; defaults to the site's name"
    )
    qos: Literal[0, 1] = Field(
        1,
        description="QoS of births and data: 1, so a write ends when the broker has every message (the Sparkplug "
        "specification asks for 0, which has no acknowledgement: messages published into a dying connection are "
        "lost)",
    )
    state_file: Path | None = Field(
        None,
        description="File keeping the bdSeq across restarts; defaults to <store.path>.sparkplug-<sink name>.json",
    )
    command_max_bytes: int = Field(
        4096, ge=64, le=1_048_576, description="Largest NCMD payload handled; a larger one is ignored (counted)"
    )
    commands_per_minute: int = Field(
        30, ge=1, le=6000, description="NCMD messages handled per minute; the ones past it are ignored (counted)"
    )
    batch_max_age: float = Field(0.05, gt=0, description="Seconds a partial batch may wait")
    batch_max_samples: int = Field(
        20_000, ge=1, description="Most samples read for one write (their PUBACKs are awaited together)"
    )
