"""The gateway configuration: `gateway.yaml`, validated once at start-up.

`load_config(path)` reads the YAML (keeping line numbers), applies environment overrides
(`BMS_GATEWAY__SINKS__MQTT__HOST=...`, through pydantic-settings), validates the models, loads
every profile the sources name, runs the checks (DBC files, read plans, cross-references), and
reports every problem as `file:line:col: message`, all in one run: a stage runs on what the stages
before it found valid (see gateway.config.partial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.alarms.config import AlarmsConfig
from gateway.assess.config import AssessConfig
from gateway.config.base import Strict, renamed_keys
from gateway.config.library import ProfileFile, find_dbc, find_profile, profile_candidates, searched
from gateway.config.partial import reduced, set_aside
from gateway.config.profiles import load_profile, problems_from
from gateway.config.yamlpos import load_yaml, position, to_plain
from gateway.errors import ConfigError, Problem
from gateway.ops.clockconfig import ClockConfig
from gateway.ops.config import HttpConfig
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.sim.config import SimulatedSourceConfig

SourceConfig = Annotated[SimulatedSourceConfig | ModbusSourceConfig | CanSourceConfig, Field(discriminator="type")]
SinkConfig = Annotated[InfluxSinkConfig | MqttSinkConfig | SparkplugSinkConfig, Field(discriminator="type")]

ENV_PREFIX = "BMS_GATEWAY__"


class SiteConfig(Strict):
    """The site this gateway serves."""

    name: str = Field("site", pattern=r"^[A-Za-z0-9_.-]+$", description="Site tag on every sample and topic")
    profiles_dir: Path = Field(
        Path("profiles"),
        description="Directory of the site's own profile YAML files, relative to this file; a profile not found "
        "there comes from the shipped library",
    )
    dbc_dir: Path = Field(
        Path("../dbc"),
        description="Directory of the DBC files of the site's own CAN profiles, relative to this file (then the "
        "library's)",
    )


class StoreConfig(Strict):
    """The local store: the outbox every sink reads from, and the embedded default destination."""

    path: Path = Field(Path("var/bms-gateway.db"), description="SQLite file (WAL mode), relative to the working dir")
    max_bytes: int = Field(1_000_000_000, ge=1_000_000, description="Disk budget; past it the oldest rows go (counted)")
    retention_hours: float | None = Field(
        None, gt=0, description="Drop rows older than this even within budget (unset: keep until the budget)"
    )
    commit_interval: float = Field(
        0.02,
        gt=0,
        le=5,
        description="Shortest time between group commits (the crash-loss bound); a batch after a quiet spell "
        "is committed at once",
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal: survives a process crash; full: also a power loss (slower)"
    )
    max_dead_letters: int = Field(
        100_000, ge=100, description="Dead letters kept per sink; older ones are deleted (counted and logged)"
    )
    memory_buffer_samples: int = Field(
        500_000,
        ge=1000,
        description="Samples kept in memory while the store cannot be written (a full disk, another process's "
        "lock), stored in order once it can; past it the oldest go (counted, reason disk_full or store_locked)",
    )


class LoggingConfig(Strict):
    """Log output (structlog)."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    library_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning",
        description="Lowest level of the libraries' own lines (pymodbus, MQTT client, asyncio, influxdb-client, "
        "urllib3, python-can); debug shows pymodbus's frame dumps",
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
    heartbeat_interval: float = Field(
        10.0,
        ge=0,
        description="Seconds between heartbeats, the gateway's counters stored like any data (InfluxDB "
        "measurement `gateway`, MQTT `gateway/heartbeat`); 0 turns them off",
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
    assess: AssessConfig = Field(default_factory=AssessConfig, description="Live assessment (measured capacity)")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging")
    http: HttpConfig = Field(default_factory=HttpConfig, description="HTTP endpoint")
    clock: ClockConfig = Field(default_factory=ClockConfig, description="Device clock offsets, host time sync")
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


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with everything it refers to, resolved."""

    config: GatewayConfig
    path: Path
    profiles: dict[str, BaseModel] = field(default_factory=dict)
    # profile name → digest of the files it refers to (a CAN profile's DBC file), taken at load time,
    # so that a reload restarts the sources of a profile whose file changed on disk
    file_digests: dict[str, str] = field(default_factory=dict)
    # what is valid but should change (a deprecated key name), each at its place: `validate` prints them
    warnings: list[Problem] = field(default_factory=list)
    # profile name → the file it was loaded from: the site's own or the shipped library's
    profile_paths: dict[str, ProfileFile] = field(default_factory=dict)

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

    def profile_file(self, name: str) -> Path:
        """The file a profile was loaded from (the site's own path for a name not loaded)."""
        found = self.profile_paths.get(name)
        return found.path if found is not None else self.profiles_dir / f"{name}.yaml"

    def dbc_file(self, profile_name: str, dbc: str | Path) -> Path:
        """The DBC file a profile's `dbc:` names: a shipped profile's in the library, a site profile's in
        `site.dbc_dir`, then in the library."""
        found = self.profile_paths.get(profile_name)
        return find_dbc(dbc, shipped=found is not None and found.shipped, site_dbc_dir=self.dbc_dir)

    @property
    def enabled_sources(self) -> list[Any]:
        return [s for s in self.config.sources if s.enabled]


EMPTY = (
    "empty configuration: expected at least `site:` with the site's `name:`, and the `sources:` to read "
    "(`bms-gateway schema` lists every key)"
)


def load_config(path: Path) -> LoadedConfig:
    """Load, validate and resolve a gateway configuration; raise ConfigError naming every problem."""
    from gateway.config.checks import check_config  # protocol checks that need the profiles (DBC files, ...)

    data = read_config_data(path)
    config, problems = validate_model(data, str(path))
    if config is None:
        raise ConfigError(problems)
    first = LoadedConfig(config, path)
    profiles, failed = load_profiles(first, data, problems)
    loaded = LoadedConfig(set_aside(config, failed), path, profiles, profile_paths=first.profile_paths)
    try:
        problems += name_problems(loaded, data) + check_config(loaded, data)
    except Exception:
        if not problems:  # on a valid configuration a check that fails is a bug
            raise
        # on what is left of an invalid one, a check that cannot run adds nothing: the problems stand
    if problems:
        raise ConfigError(problems)
    loaded.file_digests.update(profile_file_digests(loaded))
    loaded.warnings.extend(renamed_keys(loaded.config.sources, data, str(path)))
    return loaded


def read_config_data(path: Path) -> Any:
    """The YAML of a configuration file: a mapping with at least one key."""
    data = load_yaml(path)
    if data is None or (isinstance(data, dict) and not data):
        raise ConfigError(Problem(str(path), 0, 0, EMPTY))
    if not isinstance(data, dict):
        raise ConfigError(Problem(str(path), 1, 1, "the configuration must be a mapping (site:, sources:, ...)"))
    return data


def validate_model(data: Any, name: str) -> tuple[GatewayConfig | None, list[Problem]]:
    """The model of the file, or with its problems the model of what is valid in it (None: nothing is)."""
    plain = to_plain(data)
    try:
        return GatewayConfig(**plain), []
    except ValidationError as exc:
        problems = problems_from(exc, data, name)
        return reduced(plain, exc, lambda d: GatewayConfig(**d), set(GatewayConfig.model_fields)), problems


def load_profiles(loaded: LoadedConfig, data: Any, problems: list[Problem]) -> tuple[dict[str, BaseModel], set[int]]:
    """Every profile a source names (also a source with errors: its profile's own problems show too);
    adds the problems, and returns the profiles and the indices of the sources whose profile failed.
    A name is looked up in `site.profiles_dir`, then in the shipped library (`loaded.profile_paths`)."""
    profiles: dict[str, BaseModel] = {}
    bad: dict[str, bool] = {}  # profile name → failed
    failed: set[int] = set()
    for i, src in enumerate(loaded.config.sources):
        name = getattr(src, "profile", None)
        if name is None:
            continue
        if name not in bad:
            found = find_profile(name, loaded.profiles_dir)
            try:
                if found is None:
                    line, col = position(data, ["sources", i, "profile"])
                    places = searched(profile_candidates(name, loaded.profiles_dir))
                    msg = f"profile {name!r} not found: searched {places} (`bms-gateway profiles list` shows them)"
                    raise ConfigError(Problem(str(loaded.path), line, col, msg))
                loaded.profile_paths[name] = found
                profiles[name] = load_profile(found.path)
            except ConfigError as exc:
                problems.extend(exc.problems)
            bad[name] = name not in profiles
        if bad[name]:
            failed.add(i)
    return profiles, failed


def name_problems(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Every source has its own name and rack (a second one is reported at its line)."""
    names: dict[str, int] = {}
    racks: dict[str, tuple[str, int]] = {}
    out: list[Problem] = []
    for i, src in enumerate(loaded.config.sources):
        if not src.name:
            continue
        if src.name in names:
            line, col = position(data, ["sources", i, "name"])
            first = position(data, ["sources", names[src.name], "name"])[0]
            msg = f"duplicate source name {src.name!r}: every source needs its own name (first at line {first})"
            out.append(Problem(str(loaded.path), line, col, msg))
            continue  # its rack (the name, by default) is no second problem
        names[src.name] = i
        other = racks.get(src.rack_tag)
        if other is not None:
            line, col = position(data, ["sources", i, "rack" if getattr(src, "rack", None) else "name"])
            msg = f"duplicate rack {src.rack_tag!r}: used by sources {other[0]!r} and {src.name!r}"
            out.append(Problem(str(loaded.path), line, col, msg))
        racks.setdefault(src.rack_tag, (src.name, i))
    return out


def profile_files(loaded: LoadedConfig, name: str, profile: BaseModel) -> list[Path]:
    """The files a profile refers to besides itself (a CAN profile's DBC file)."""
    dbc = getattr(profile, "dbc", None)
    if not isinstance(dbc, str | Path):
        return []
    return [loaded.dbc_file(name, dbc)]


def profile_file_digests(loaded: LoadedConfig) -> dict[str, str]:
    import hashlib

    out: dict[str, str] = {}
    for name, profile in loaded.profiles.items():
        h = hashlib.sha256()
        files = profile_files(loaded, name, profile)
        for f in files:
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"<unreadable>")
        if files:
            out[name] = h.hexdigest()
    return out
