"""The gateway configuration: `gateway.yaml`, validated once at start-up.

`load_config(path)` reads the YAML (keeping line numbers), applies environment overrides
(`BMS_GATEWAY__SINKS__MQTT__HOST=...`, through pydantic-settings), validates the models, loads
every profile the sources name, and reports every problem as `file:line:col: message`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.alarms.config import AlarmsConfig
from gateway.can.config import CanSourceConfig
from gateway.configbase import Strict
from gateway.errors import ConfigError, Problem
from gateway.modbus.config import ModbusSourceConfig
from gateway.ops.config import HttpConfig
from gateway.profiles import load_profile, problems_from
from gateway.sim.config import SimulatedSourceConfig
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.yamlpos import load_yaml, position, to_plain

SourceConfig = Annotated[SimulatedSourceConfig | ModbusSourceConfig | CanSourceConfig, Field(discriminator="type")]
SinkConfig = Annotated[InfluxSinkConfig | MqttSinkConfig, Field(discriminator="type")]

ENV_PREFIX = "BMS_GATEWAY__"


class SiteConfig(Strict):
    """The site this gateway serves."""

    name: str = Field("site", pattern=r"^[A-Za-z0-9_.-]+$", description="Site tag on every sample and topic")
    profiles_dir: Path = Field(Path("profiles"), description="Directory of profile YAML files, relative to this file")
    dbc_dir: Path = Field(Path("../dbc"), description="Directory of DBC files, relative to this file")


class StoreConfig(Strict):
    """The local store: the outbox every sink reads from, and the embedded default destination."""

    path: Path = Field(Path("var/bms-gateway.db"), description="SQLite file (WAL mode), relative to the working dir")
    max_bytes: int = Field(1_000_000_000, ge=1_000_000, description="Disk budget; past it the oldest rows go (counted)")
    retention_hours: float | None = Field(
        None, gt=0, description="Drop rows older than this even within budget (unset: keep until the budget)"
    )
    commit_interval: float = Field(0.02, gt=0, le=5, description="Seconds between group commits (the crash-loss bound)")
    synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal: survives a process crash; full: also a power loss (slower)"
    )
    max_dead_letters: int = Field(
        100_000, ge=100, description="Dead letters kept per sink; older ones are deleted (counted and logged)"
    )


class LoggingConfig(Strict):
    """Log output (structlog)."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise"
    )


class RuntimeConfig(Strict):
    """Process behaviour."""

    grace_period: float = Field(10.0, gt=0, description="Seconds to drain and flush on SIGTERM before exiting")
    queue_batches: int = Field(
        256, ge=1, description="Bound of the source → outbox queue, in batches (sources wait when it is full)"
    )
    queue_samples: int = Field(
        100_000,
        ge=1,
        description="Bound of the source → outbox queue, in samples (sources wait when it is full: memory stays "
        "bounded when the machine cannot keep up)",
    )


class GatewayConfig(BaseSettings):
    """Root of `gateway.yaml`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        use_attribute_docstrings=True,
    )

    site: SiteConfig = Field(default_factory=SiteConfig, description="The site")
    sources: list[SourceConfig] = Field(default_factory=list, description="Devices and buses to read")
    sinks: dict[str, SinkConfig] = Field(
        default_factory=dict, description="Destinations by name (e.g. influx, mqtt); the store is always there"
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="The local store and outbox")
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig, description="Alarm engine")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging")
    http: HttpConfig = Field(default_factory=HttpConfig, description="HTTP endpoint")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Process behaviour")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the file

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        seen: set[str] = set()
        for src in self.sources:
            if src.name in seen:
                raise ValueError(f"duplicate source name {src.name!r}: every source needs its own name")
            seen.add(src.name)
        racks: dict[str, str] = {}
        for src in self.sources:
            if isinstance(src, CanSourceConfig | ModbusSourceConfig | SimulatedSourceConfig):
                other = racks.get(src.rack_tag)
                if other is not None:
                    raise ValueError(f"duplicate rack {src.rack_tag!r}: used by sources {other!r} and {src.name!r}")
                racks[src.rack_tag] = src.name
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with everything it refers to, resolved."""

    config: GatewayConfig
    path: Path
    profiles: dict[str, BaseModel] = field(default_factory=dict)
    # profile name → digest of the files it refers to (a CAN profile's DBC file), taken at load time,
    # so that a reload restarts the sources of a profile whose file changed on disk
    file_digests: dict[str, str] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else self.base_dir / p

    @property
    def profiles_dir(self) -> Path:
        return self.resolve(self.config.site.profiles_dir)

    @property
    def dbc_dir(self) -> Path:
        return self.resolve(self.config.site.dbc_dir)

    @property
    def enabled_sources(self) -> list[Any]:
        return [s for s in self.config.sources if s.enabled]


def load_config(path: Path) -> LoadedConfig:
    """Load, validate and resolve a gateway configuration; raise ConfigError naming every problem."""
    import gateway.plugins  # noqa: F401  (profile kinds and checks register on import)

    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(Problem(str(path), 1, 1, "the configuration must be a mapping (site:, sources:, ...)"))
    try:
        config = GatewayConfig(**to_plain(data))
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, data, str(path))) from exc
    loaded = LoadedConfig(config, path)
    problems: list[Problem] = []
    profiles: dict[str, BaseModel] = {}
    for i, src in enumerate(config.sources):
        name = getattr(src, "profile", None)
        if name is None or name in profiles:
            continue
        file = loaded.profiles_dir / f"{name}.yaml"
        if not file.exists():
            line, col = position(data, ["sources", i, "profile"])
            problems.append(Problem(str(path), line, col, f"profile {name!r} not found: expected {file}"))
            continue
        try:
            profiles[name] = load_profile(file)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    loaded = LoadedConfig(config, path, profiles)
    from gateway.checks import check_config  # protocol checks that need the profiles (DBC files, ...)

    problems = check_config(loaded, data)
    if problems:
        raise ConfigError(problems)
    loaded.file_digests.update(profile_file_digests(loaded))
    return loaded


def profile_files(loaded: LoadedConfig, profile: BaseModel) -> list[Path]:
    """The files a profile refers to besides itself (a CAN profile's DBC file)."""
    dbc = getattr(profile, "dbc", None)
    if not isinstance(dbc, str | Path):
        return []
    p = Path(dbc)
    return [p if p.is_absolute() else loaded.dbc_dir / p]


def profile_file_digests(loaded: LoadedConfig) -> dict[str, str]:
    import hashlib

    out: dict[str, str] = {}
    for name, profile in loaded.profiles.items():
        h = hashlib.sha256()
        files = profile_files(loaded, profile)
        for f in files:
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"<unreadable>")
        if files:
            out[name] = h.hexdigest()
    return out
