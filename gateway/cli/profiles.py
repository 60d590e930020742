"""`bms-gateway profiles list`: the device profiles that ship, and those of a site.

Every `*.yaml` of the shipped library (gateway.config.library), of the configuration's
`site.profiles_dir` and of each `--dir` is loaded as the gateway would load it and described by one
`ProfileEntry`: its name,
protocol kind, the document (and version) it was written from and its transport (the `# source:` and
`# transport:` lines of its leading comment), and the quantities it yields. A file that does not load
is listed with its errors (`file:line:col: message`) instead of stopping the command. A site profile
with the name of a shipped one is marked as overriding it: the gateway uses the site's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.library import LIBRARY, SITE, library_profiles_dir
from gateway.errors import ConfigError

KINDS = {"can": "CAN", "modbus": "Modbus"}
DEFAULT_TRANSPORT = {"can": "CAN", "modbus": "Modbus (TCP or RTU, set per source)"}
HEADER_KEYS = ("source", "transport")
DISCOVERED = "discovered (SunSpec models)"


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One profile file as `profiles list` shows it."""

    name: str
    file: str
    directory: str
    origin: str  # "library", "site" or "dir"
    kind: str = ""  # CAN, Modbus, or the protocol key as written
    source: str = ""
    transport: str = ""
    description: str = ""
    quantities: list[str] = field(default_factory=list)
    discovered: bool = False  # quantities found on the device at run time (SunSpec)
    errors: list[str] = field(default_factory=list)
    overrides: str = ""  # a site profile: the shipped file of the same name it replaces


@dataclass(frozen=True, slots=True)
class ProfileDir:
    path: Path
    origin: str


def header_fields(text: str) -> dict[str, str]:
    """`# source: ...` and `# transport: ...` of the comment lines at the top of a profile (a line
    indented under one, `#   more`, continues it)."""
    out: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if stripped:
                break
            last = ""
            continue
        body = stripped[1:]
        if last and body.startswith("  ") and body.strip():
            out[last] += " " + body.strip()
            continue
        key, sep, value = body.strip().partition(":")
        last = key.strip().lower() if sep and key.strip().lower() in HEADER_KEYS and value.strip() else ""
        if last in out:
            last = ""  # the first of a key counts
        elif last:
            out[last] = value.strip()
    return out


def quantities_of(node: Any) -> set[str]:
    """Every quantity a profile's points name: `quantity:` keys, CAN `bits:` and Modbus `flags:` names."""
    out: set[str] = set()
    if isinstance(node, dict):
        q = node.get("quantity")
        if isinstance(q, str):
            out.add(q)
        for key, prefix in (("bits", "alarm."), ("flags", "")):
            names = node.get(key)
            if isinstance(names, dict):
                out |= {n if "." in n or not prefix else prefix + n for n in names.values() if isinstance(n, str)}
        for value in node.values():
            out |= quantities_of(value)
    elif isinstance(node, list | tuple):
        for value in node:
            out |= quantities_of(value)
    return out


def describe(path: Path, origin: str) -> ProfileEntry:
    """Load one profile file; never raises for what is in the file."""
    from gateway.config.profiles import load_profile

    name, file, where = path.stem, str(path), str(path.parent)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ProfileEntry(name, file, where, origin, errors=[f"{path}: cannot read: {exc}"])
    head = header_fields(text)
    try:
        model = load_profile(path)
    except ConfigError as exc:
        errors = [str(p) for p in exc.problems]
        return ProfileEntry(name, file, where, origin, source=head.get("source", ""), errors=errors)
    protocol = str(getattr(model, "protocol", ""))
    data = model.model_dump(mode="python")
    return ProfileEntry(
        name,
        file,
        where,
        origin,
        kind=KINDS.get(protocol, protocol),
        source=head.get("source", ""),
        transport=head.get("transport", DEFAULT_TRANSPORT.get(protocol, "")),
        description=str(getattr(model, "description", "")),
        quantities=sorted(quantities_of(data.get("points", [])) | quantities_of(data.get("groups", []))),
        discovered=bool(data.get("sunspec")),
    )


def list_profiles(dirs: list[ProfileDir]) -> tuple[list[ProfileEntry], list[str]]:
    """The profiles of each directory in name order, and the directories that could not be read."""
    entries: list[ProfileEntry] = []
    problems: list[str] = []
    for d in dirs:
        try:
            files = sorted(p for p in d.path.iterdir() if p.suffix == ".yaml" and p.is_file())
        except OSError as exc:
            problems.append(f"{d.path}: cannot list the profiles directory: {exc.strerror or exc}")
            continue
        entries.extend(describe(p, d.origin) for p in files)
    return mark_overrides(entries), problems


def mark_overrides(entries: list[ProfileEntry]) -> list[ProfileEntry]:
    """Each site profile with the name of a shipped one names the shipped file it replaces."""
    from dataclasses import replace

    shipped = {e.name: e.file for e in entries if e.origin == LIBRARY}
    return [replace(e, overrides=shipped[e.name]) if e.origin == SITE and e.name in shipped else e for e in entries]


def site_profiles_dir(config: Path) -> Path:
    """`site.profiles_dir` of a configuration file (default `profiles`), relative to the file."""
    from gateway.config.settings import read_config_data

    data = read_config_data(config)  # a ConfigError names the file
    site = data.get("site") if isinstance(data, dict) else None
    raw = site.get("profiles_dir", "profiles") if isinstance(site, dict) else "profiles"
    p = Path(str(raw))
    return p if p.is_absolute() else config.parent / p


def directories(args: argparse.Namespace) -> list[ProfileDir]:
    from gateway.cli.main import NO_CONFIG, config_path
    from gateway.errors import Problem

    dirs = [ProfileDir(library_profiles_dir(), LIBRARY)]
    config = config_path(args)
    if args.config is not None and not config.exists():
        raise ConfigError(Problem(str(config), 0, 0, NO_CONFIG))
    if config.exists():
        site = site_profiles_dir(config)
        if site.resolve() != dirs[0].path.resolve():  # a site whose directory is the library has none of its own
            dirs.append(ProfileDir(site, SITE))
    dirs.extend(ProfileDir(Path(d), "dir") for d in args.dir)
    return dirs


def yields(e: ProfileEntry) -> str:
    if e.errors:
        return "-"
    n = f"{len(e.quantities)} quantities" if e.quantities else ""
    return f"{n} + {DISCOVERED}" if n and e.discovered else (DISCOVERED if e.discovered else n or "0 quantities")


def named(e: ProfileEntry) -> str:
    return f"{e.name} (overrides the shipped one)" if e.overrides else e.name


def render_table(entries: list[ProfileEntry], dirs: list[ProfileDir]) -> str:
    lines: list[str] = []
    for d in dirs:
        rows = [e for e in entries if e.directory == str(d.path) and e.origin == d.origin]
        lines.append(f"{d.path} ({d.origin}): {len(rows)} profiles")
        if not rows:
            continue
        table = [("NAME", "KIND", "YIELDS", "TRANSPORT", "SOURCE")]
        table += [(named(e), e.kind or "?", yields(e), e.transport, e.source or "-") for e in rows if not e.errors]
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        lines += ["  " + "".join(c.ljust(w + 2) for c, w in zip(r, widths, strict=False)) + r[4] for r in table]
        lines += [f"  {e.name}  BROKEN: {err}" for e in rows for err in e.errors]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    dirs = directories(args)
    entries, problems = list_profiles(dirs)
    if args.json:
        doc = {"directories": [{"path": str(d.path), "origin": d.origin} for d in dirs], "problems": problems}
        doc["profiles"] = [asdict(e) for e in entries]
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(render_table(entries, dirs))
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    broken = [e for e in entries if e.errors]
    if broken and not args.json:
        print(f"error: {len(broken)} profile(s) do not load (listed above as BROKEN)", file=sys.stderr)
    return 2 if broken or problems else 0


def register(sub: Any) -> None:
    from gateway.cli.main import add_config_arg

    p = sub.add_parser("profiles", help="device profiles: list what ships and what a site has")
    psub = p.add_subparsers(dest="profiles_command", required=True)
    q = psub.add_parser(
        "list",
        help="the shipped profile library, and the profiles of the configuration's site.profiles_dir (with -c; "
        "those overriding a shipped one are marked) and of each --dir: kind, transport, source document, "
        "quantities; a file that does not load is listed with its errors",
    )
    add_config_arg(q)
    q.add_argument("--dir", action="append", default=[], type=Path, help="another profiles directory (repeatable)")
    q.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    q.set_defaults(func=cmd_list)
