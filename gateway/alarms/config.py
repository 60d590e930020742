"""Configuration of the alarm engine: rule sets, per-site overrides, the MQTT command topic, the journal.

A rule is a frozen model chosen by its `kind:`; the shipped defaults (`gateway/data/alarms/*.yaml`)
and a site's own rules use the same models, so `bms-gateway validate` names `file:line:col` for a
typo in either.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway import catalog
from gateway.alarms.commandconfig import CommandsConfig
from gateway.config.base import Strict

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning")
StateValue = str | int | float | bool
QualityName = Literal["stale", "bad", "out_of_range", "missing", "comm_loss"]

# Names a message template may use: str.format fields.
TEMPLATE_FIELDS = frozenset({"value", "limit", "unit", "where", "rack", "quantity", "other", "rule"})
# Derived quantities a disagreement rule can compare against.
DERIVED = frozenset({"sum:cell_voltage", "sum:module_voltage", "coulomb_soc"})


def _check_quantity(name: str) -> str:
    if not catalog.is_valid(name):
        raise ValueError(
            f"unknown quantity {name!r}: expected a catalog name (see `bms-gateway catalog`) "
            "or raw.<name>, alarm.<name>, warning.<name>"
        )
    return name


class RuleBase(Strict):
    """Fields every rule has."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Stable rule id; part of every alarm id")
    severity: Severity = Field("major", description="critical, major, minor or warning")
    enabled: bool = Field(True, description="Set false to keep the rule but not evaluate it")
    on_delay: float = Field(0.0, ge=0, description="Seconds the condition must hold before the alarm raises")
    off_delay: float = Field(0.0, ge=0, description="Seconds the condition must be gone before the alarm clears")
    latch: bool = Field(False, description="Stay active after the condition clears, until acknowledged")
    racks: list[str] | None = Field(None, description="Only these racks (default: every rack)")
    message: str | None = Field(
        None, description="Message template; fields {value} {limit} {unit} {where} {rack} {quantity} {other} {rule}"
    )
    description: str = Field("", description="What the rule protects against (documentation)")

    @field_validator("message")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as exc:
            raise ValueError(f"message template is malformed: {exc}") from exc
        unknown = {f.split(".")[0].split("[")[0] for f in fields} - TEMPLATE_FIELDS - {""}
        if unknown:
            raise ValueError(
                f"message template uses unknown field(s) {sorted(unknown)}: expected {sorted(TEMPLATE_FIELDS)}"
            )
        return v


class ThresholdRule(RuleBase):
    """A high or low limit on a quantity, per element (cell, module) or per rack, with hysteresis."""

    kind: Literal["threshold"] = "threshold"
    quantity: str = Field(description="Catalog quantity to watch")
    high: float | None = Field(None, description="Alarm when the value is above this")
    low: float | None = Field(None, description="Alarm when the value is below this")
    deadband: float = Field(0.0, ge=0, description="Clear only when the value is this far back inside the limit")

    _q = field_validator("quantity")(_check_quantity)

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        if (self.high is None) == (self.low is None):
            raise ValueError("a threshold rule needs exactly one of `high` or `low`")
        return self


class LimitRule(RuleBase):
    """A quantity against a limit the BMS reports (rack current against its charge/discharge limit)."""

    kind: Literal["limit"] = "limit"
    quantity: str = Field(description="Quantity to watch, e.g. rack_current")
    limit: str = Field(description="Quantity holding the limit, e.g. charge_current_limit")
    direction: Literal["above", "below"] = Field("above", description="above: value > limit; below: value < limit")
    limit_scale: float = Field(1.0, description="Multiply the limit first (-1 for a discharge limit given positive)")
    margin: float = Field(0.0, ge=0, description="Tolerance beyond the limit before the condition is true")
    deadband: float = Field(0.0, ge=0, description="Hysteresis when clearing")

    _q = field_validator("quantity", "limit")(_check_quantity)


class RateRule(RuleBase):
    """Rate of change of a quantity (per second), per element."""

    kind: Literal["rate"] = "rate"
    quantity: str = Field(description="Quantity to watch")
    rise: float | None = Field(None, gt=0, description="Alarm when it rises faster than this per second")
    fall: float | None = Field(None, gt=0, description="Alarm when it falls faster than this per second")
    window: float = Field(0.0, ge=0, description="Seconds over which the rate is taken (0: consecutive samples)")
    deadband: float = Field(0.0, ge=0, description="Hysteresis on the rate when clearing")

    _q = field_validator("quantity")(_check_quantity)

    @model_validator(mode="after")
    def _one(self) -> RateRule:
        if self.rise is None and self.fall is None:
            raise ValueError("a rate rule needs `rise`, `fall` or both")
        return self


class SpreadRule(RuleBase):
    """Highest minus lowest value of an array (cell voltages, temperatures) in a rack or module."""

    kind: Literal["spread"] = "spread"
    quantity: str = Field(description="Per-cell or per-module quantity, e.g. cell_voltage")
    scope: Literal["rack", "module"] = Field("rack", description="Spread across the rack, or within each module")
    high: float = Field(gt=0, description="Alarm when the spread is above this")
    deadband: float = Field(0.0, ge=0, description="Hysteresis when clearing")
    min_count: int = Field(2, ge=2, description="Fewest values in a batch for a spread to be taken")

    _q = field_validator("quantity")(_check_quantity)


class DisagreementRule(RuleBase):
    """Two readings of the same thing that should agree (pack voltage vs sum of cells; SoC vs coulomb count)."""

    kind: Literal["disagreement"] = "disagreement"
    quantity: str = Field(description="The reading under test, e.g. rack_voltage or soc")
    versus: str = Field(description="A quantity, or a derived value: sum:cell_voltage, sum:module_voltage, coulomb_soc")
    tolerance: float = Field(0.0, ge=0, description="Absolute difference allowed")
    tolerance_pct: float = Field(0.0, ge=0, description="Difference allowed as % of the reference value")
    deadband: float = Field(0.0, ge=0, description="Hysteresis when clearing")
    capacity_ah: float | None = Field(
        None, gt=0, description="coulomb_soc: capacity in Ah (default: the capacity_full the BMS reports)"
    )
    min_count: int = Field(1, ge=1, description="sum:*: fewest elements with a value to sum (e.g. the cells)")
    max_age: float = Field(
        60.0,
        gt=0,
        description="sum:* and a quantity: seconds a reference reading counts before the tested one's time "
        "(or 3 times its own interval between readings, when longer)",
    )

    _q = field_validator("quantity")(_check_quantity)

    @field_validator("versus")
    @classmethod
    def _versus(cls, v: str) -> str:
        return v if v in DERIVED else _check_quantity(v)

    @model_validator(mode="after")
    def _tol(self) -> DisagreementRule:
        if self.tolerance == 0 and self.tolerance_pct == 0:
            raise ValueError("a disagreement rule needs `tolerance` or `tolerance_pct` above 0")
        return self


class StateRule(RuleBase):
    """An interlock, contactor, breaker or enum state with its safe or unsafe values."""

    kind: Literal["state"] = "state"
    quantity: str = Field(description="State quantity, e.g. contactor_positive, interlock_estop, bms_state")
    unsafe: list[StateValue] | None = Field(None, description="Values that raise the alarm")
    safe: list[StateValue] | None = Field(None, description="Values that are fine; any other raises the alarm")

    _q = field_validator("quantity")(_check_quantity)

    @model_validator(mode="after")
    def _one(self) -> StateRule:
        if (self.unsafe is None) == (self.safe is None):
            raise ValueError("a state rule needs exactly one of `unsafe` or `safe`")
        return self


class BitsRule(RuleBase):
    """BMS alarm or warning bits (`alarm.<name>`, `warning.<name>`): one alarm per bit that is set."""

    kind: Literal["bms_bits"] = "bms_bits"
    prefix: Literal["alarm.", "warning."] = Field("alarm.", description="Which family of bits")
    severities: dict[str, Severity] = Field(
        default_factory=dict, description="Severity per bit name (without the prefix); others use `severity`"
    )


class CommLossRule(RuleBase):
    """The device stopped answering (its source reports it offline, or values carry comm_loss)."""

    kind: Literal["comm_loss"] = "comm_loss"


class StaleRule(RuleBase):
    """No sample from the rack for `max_age` seconds (checked on a clock, even when nothing arrives)."""

    kind: Literal["stale"] = "stale"
    max_age: float = Field(gt=0, description="Seconds without any sample before the rack is stale")


class QualityRule(RuleBase):
    """Readings whose quality flag is bad (per quantity and element)."""

    kind: Literal["quality"] = "quality"
    quantity: str | None = Field(None, description="Only this quantity (default: every quantity)")
    qualities: list[QualityName] = Field(
        default_factory=lambda: list[QualityName](["bad", "out_of_range"]),
        description="Quality flags that raise the alarm",
    )

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str | None) -> str | None:
        return None if v is None else _check_quantity(v)


RuleSpec = Annotated[
    ThresholdRule
    | LimitRule
    | RateRule
    | SpreadRule
    | DisagreementRule
    | StateRule
    | BitsRule
    | CommLossRule
    | StaleRule
    | QualityRule,
    Field(discriminator="kind"),
]


class JournalConfig(Strict):
    """The hash-chained alarm journal."""

    path: Path | None = Field(None, description="SQLite file of the journal (default: the store file, own table)")
    synchronous: Literal["normal", "full"] = Field("full", description="full: an entry survives a power loss")
    condition_interval: float = Field(
        1.0, ge=0, le=3600,
        description="Seconds: at most one condition note per alarm this often, counting the changes (0: every change)",
    )  # fmt: skip


class AlarmsConfig(Strict):
    """The alarm engine: BMS alarm bits, interlocks and the gateway's own rules."""

    enabled: bool = Field(True, description="Evaluate alarms")
    defaults: str | None = Field(
        "lithium-ion", description="Built-in rule set to start from (lithium-ion), or null for none"
    )
    rules_files: list[Path] = Field(
        default_factory=list, description="Further rule files (YAML with a `rules:` list), relative to gateway.yaml"
    )
    rules: list[RuleSpec] = Field(default_factory=list, description="Site rules; one with a default's id replaces it")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per rule id, fields to change (e.g. {cell_over_voltage: {high: 3.7}})"
    )
    tick_interval: float = Field(0.25, gt=0, le=5, description="Seconds between clock checks (delays, stale, shelve)")
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="MQTT acknowledge/shelve commands")
    journal: JournalConfig = Field(default_factory=JournalConfig, description="The alarm journal")
