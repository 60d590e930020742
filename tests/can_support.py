"""Helpers for the CAN tests: fixture paths, site configs on a tmp dir, offline expectations."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import can

from gateway.config.profiles import load_profile
from gateway.sources.can.capture import read_capture
from gateway.sources.can.config import CanProfile
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import RackPlan, compile_rack

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).resolve().parent / "fixtures" / "can"
BMS_DBC = FIX / "BMS.dbc"
BMS_LOG = FIX / "bms-dump.log"
FOX_DBC = FIX / "foxbms.dbc"
FOX_TRC = FIX / "can-log.trc"
PROFILES = ROOT / "config" / "profiles"  # the example site's own profiles
DBC_DIR = ROOT / "dbc"  # and their DBC files
LIBRARY = ROOT / "gateway" / "data" / "profiles"  # the shipped profile library
LIBRARY_DBC = ROOT / "gateway" / "data" / "dbc"  # and its DBC files


def profile_path(name: str) -> Path:
    """A project profile's file: the example site's own, else the shipped library's."""
    own = PROFILES / f"{name}.yaml"
    return own if own.exists() else LIBRARY / f"{name}.yaml"


def make_site(tmp_path: Path, sources: str, *, profiles: dict[str, str] | None = None, extra: str = "") -> Path:
    """A gateway.yaml in tmp_path with the example site's CAN profiles and DBCs (plus `profiles`); the
    shipped library's are found by name."""
    pdir = tmp_path / "profiles"
    ddir = tmp_path / "dbc"
    pdir.mkdir(exist_ok=True)
    ddir.mkdir(exist_ok=True)
    for f in PROFILES.glob("can-*.yaml"):
        shutil.copy(f, pdir / f.name)
    for f in DBC_DIR.glob("*.dbc"):
        shutil.copy(f, ddir / f.name)
    for name, text in (profiles or {}).items():
        (pdir / f"{name}.yaml").write_text(text, encoding="utf-8")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        f"site:\n  name: t\n  profiles_dir: profiles\n  dbc_dir: dbc\nsources:\n{sources}\n"
        f"store:\n  path: {tmp_path / 'store.db'}\n  commit_interval: 0.02\n{extra}",
        encoding="utf-8",
    )
    return cfg


def project_plan(profile: str, dbc: Path, rack: str = "r1", id_offset: int = 0) -> RackPlan:
    prof = load_profile(profile_path(profile))
    assert isinstance(prof, CanProfile)
    plan = compile_rack(prof, load_dbc(dbc, lenient=prof.lenient).db, rack=rack, id_offset=id_offset)
    assert isinstance(plan, RackPlan), plan
    return plan


def offline_samples(plan: RackPlan, frames: list[can.Message]) -> Counter[tuple[Any, ...]]:
    """(quantity, value, quality, module, cell) of every sample the plan makes from the frames."""
    out: Counter[tuple[Any, ...]] = Counter()
    for m in frames:
        samples, _ = plan.decode_frame(m.arbitration_id, m.is_extended_id, m.data, 0)
        out.update((s.quantity, s.value, str(s.quality), s.module, s.cell) for s in samples)
    return out


def log_frames(path: Path = BMS_LOG) -> list[can.Message]:
    return list(read_capture(path))
