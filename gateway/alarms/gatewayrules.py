"""The gateway's own alarms in the engine (rack `gateway`; see gateway.alarms.gatewayalarm).

Each reported condition is an alarm instance like a rack alarm's, keyed (rule, `gateway`, None, None,
element): `store_disk_full` is `gateway:store_disk_full`, `sink_auth_failed:influx` is
`gateway:sink_auth_failed:influx`. Its rule is built in, not configured: no delay, no latch, the
severity the component gives.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from gateway.alarms.config import SEVERITIES, RuleBase, Severity
from gateway.alarms.gatewayalarm import GATEWAY, Condition
from gateway.alarms.instances import Key


class GatewayRule(RuleBase):
    """A condition the gateway reports about itself (never in a rule file)."""

    kind: Literal["gateway"] = "gateway"


def key_of(name: str) -> Key:
    rule, _, element = name.partition(":")
    return Key(rule, GATEWAY, None, None, element)


def name_of(key: Key) -> str:
    return f"{key[0]}:{key[4]}" if key[4] else key[0]


def rule_for(cond: Condition) -> GatewayRule:
    return _rule(cond.rule, cond.severity)


def restored_rule(rec: dict[str, Any]) -> GatewayRule:
    """The rule of a gateway alarm restored from its journal entry."""
    return _rule(str(rec["rule"]), str(rec["severity"]))


def _rule(rule: str, severity: str) -> GatewayRule:
    # Not validated: the name comes from the gateway's code or its own journal, never from a rule file.
    level = cast(Severity, severity if severity in SEVERITIES else "critical")
    return GatewayRule.model_construct(id=rule, severity=level)
