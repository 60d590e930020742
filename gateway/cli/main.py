"""The `bms-gateway` command line.

Exit codes: 0 success; 1 runtime failure; 2 invalid configuration or usage; 130 forced stop.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, Problem

# Modules that add sub-commands: each has `register(subparsers)`.
CLI_MODULES: list[str] = [
    "gateway.cli.store",
    "gateway.cli.demo",
    "gateway.cli.modbus",
    "gateway.cli.can",
    "gateway.cli.sinks",
    "gateway.cli.alarms",
    "gateway.cli.assess",
    "gateway.cli.package",
    "gateway.cli.profiles",
]

DEFAULT_CONFIG = Path("/etc/bms-gateway/gateway.yaml")

Handler = Callable[[argparse.Namespace], int]


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, default=None, help=f"gateway.yaml (default {DEFAULT_CONFIG})")


def config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    import os

    directory = os.environ.get("CONFIGURATION_DIRECTORY")  # systemd ConfigurationDirectory=
    if directory:
        return Path(directory) / "gateway.yaml"
    return DEFAULT_CONFIG


NO_CONFIG = (
    "no configuration file: write one (docs/configuration.md; config/gateway.yaml is an example), "
    "mount one (a container: -v /etc/bms-gateway:/etc/bms-gateway:ro), "
    "or try `bms-gateway demo` (simulated racks, no configuration needed)"
)


def load_or_exit(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from gateway.config.settings import load_config

    path = config_path(args)
    if not path.exists():
        raise ConfigError(Problem(str(path), 0, 0, NO_CONFIG))
    return load_config(path)  # a ConfigError reaches main(): printed, exit 2


def print_problems(exc: ConfigError) -> None:
    for p in exc.problems:
        print(f"error: {p}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = load_or_exit(args)
    from gateway.config.secretcheck import exposed_secrets, missing_secrets

    n = len(loaded.config.sources)
    for w in loaded.warnings:  # deprecated key names, each at its place with the name to use
        print(f"warning: {w}", file=sys.stderr)
    missing = missing_secrets(loaded)
    unchecked = [m for m in missing if "not checked" in m]
    absent = [m for m in missing if m not in unchecked]
    exposed = exposed_secrets(loaded)
    for m in unchecked:
        print(f"{config_path(args)}: note: {m}", file=sys.stderr)
    if args.secrets and (absent or exposed):
        for m in absent + exposed:
            print(f"{config_path(args)}: error: {m}", file=sys.stderr)
        return 2
    for m in absent:
        print(f"{config_path(args)}: warning: {m} (needed at run time)", file=sys.stderr)
    for m in exposed:
        print(f"{config_path(args)}: warning: {m}", file=sys.stderr)
    from gateway.runtime.gatewayinfo import config_digest

    print(
        f"{config_path(args)}: valid ({n} sources, {len(loaded.config.sinks)} sinks, {len(loaded.profiles)} profiles), "
        f"config digest {config_digest(loaded)}"
    )
    for name, found in sorted(loaded.profile_paths.items()):  # which file each profile name found
        print(f"  profile {name}: {found.path} ({found.label()})")
    return 0


def print_schema(model: Any, title: str) -> int:
    """Print a model's JSON Schema (with every field's description) for editors and checkers."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.config.settings import GatewayConfig

    return print_schema(GatewayConfig, "bms-gateway configuration (gateway.yaml)")


def cmd_catalog(args: argparse.Namespace) -> int:
    from gateway.catalog import CATALOG, PREFIXES

    for q in CATALOG.values():
        print(f"{q.name:32} {q.unit or '-':4} {q.level:7} {q.kind:7} {q.description}")
    for prefix, (_, level, kind) in PREFIXES.items():
        print(f"{prefix + '<name>':32} {'-':4} {level:7} {kind:7} see README, Concepts")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_or_exit(args)
    import structlog

    from gateway.app import run
    from gateway.ops.logs import configure_logging

    log_cfg = loaded.config.logging
    configure_logging(log_cfg.level, log_cfg.format, library_level=log_cfg.library_level)
    log = structlog.get_logger("config")
    for w in loaded.warnings:
        log.warning("configuration warning", problem=str(w))
    for name, found in sorted(loaded.profile_paths.items()):  # which file each profile name found
        log.info("profile", profile=name, file=str(found.path), origin=found.label())
    return run(loaded)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bms-gateway", description="BMS to EMS gateway: Modbus TCP and CAN in, InfluxDB and MQTT out"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the gateway daemon")
    add_config_arg(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check a configuration, its profiles and DBC files; touches no hardware")
    add_config_arg(p)
    p.add_argument("--lenient", action="store_true", help="load imperfect DBC files, warning once per repair")
    p.add_argument(
        "--secrets",
        action="store_true",
        help="a secret or certificate file missing on this machine, or a secret file not owner-only, is an error",
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("schema", help="print the JSON Schema of gateway.yaml")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("catalog", help="list the quantity catalog")
    p.set_defaults(func=cmd_catalog)
    for name in CLI_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bms-gateway")
    except PackageNotFoundError:
        return "dev"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "lenient", False):
        import os

        os.environ["BMS_GATEWAY_LENIENT"] = "1"
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print_problems(exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bms-gateway export | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
