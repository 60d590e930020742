"""The profile library that ships with the package, and how a profile or DBC name finds its file.

The library is package data (`gateway/data/profiles` and `gateway/data/dbc`), so a wheel, an editable
install and the container image all carry the same single copy. A source's `profile: NAME` is looked up
in the site's `site.profiles_dir` first, then in the library: a site file of the same name overrides
the shipped one. A shipped profile's `dbc:` resolves in the library; a site profile's in the site's
`site.dbc_dir`, then in the library (a site profile may name a shipped DBC without copying it).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SITE = "site"
LIBRARY = "library"


def library_profiles_dir() -> Path:
    """The directory of the shipped profiles."""
    return Path(str(resources.files("gateway") / "data" / "profiles"))


def library_dbc_dir() -> Path:
    """The directory of the shipped profiles' DBC files."""
    return Path(str(resources.files("gateway") / "data" / "dbc"))


@dataclass(frozen=True, slots=True)
class ProfileFile:
    """Where a profile name was found."""

    name: str
    path: Path
    origin: str  # SITE or LIBRARY

    @property
    def shipped(self) -> bool:
        return self.origin == LIBRARY

    def label(self) -> str:
        """`library`, `site`, or `site, overrides the shipped one` (for `validate` and the start-up log)."""
        if self.origin == SITE and (library_profiles_dir() / f"{self.name}.yaml").is_file():
            return "site, overrides the shipped one"
        return self.origin


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def profile_candidates(name: str, site_dir: Path) -> list[Path]:
    """The files a profile name may be, in lookup order (the site's directory, then the library)."""
    library = library_profiles_dir()
    site = [] if _same_dir(site_dir, library) else [site_dir / f"{name}.yaml"]
    return [*site, library / f"{name}.yaml"]


def find_profile(name: str, site_dir: Path) -> ProfileFile | None:
    """The file of a profile name: the site's own first, then the shipped one (None: neither exists)."""
    library = library_profiles_dir()
    for path in profile_candidates(name, site_dir):
        if path.is_file():
            return ProfileFile(name, path, LIBRARY if path.parent == library else SITE)
    return None


def dbc_candidates(dbc: str | Path, *, shipped: bool, site_dbc_dir: Path) -> list[Path]:
    """The files a profile's `dbc:` may be, in lookup order: an absolute path as is; for a shipped
    profile the library's file; for a site profile the site's `dbc_dir`, then the library."""
    p = Path(dbc)
    if p.is_absolute():
        return [p]
    library = library_dbc_dir() / p
    return [library] if shipped else [site_dbc_dir / p, library]


def find_dbc(dbc: str | Path, *, shipped: bool, site_dbc_dir: Path) -> Path:
    """The first existing candidate, or the first candidate when none exists (its load names it)."""
    candidates = dbc_candidates(dbc, shipped=shipped, site_dbc_dir=site_dbc_dir)
    return next((c for c in candidates if c.is_file()), candidates[0])


def searched(paths: list[Path]) -> str:
    """The places a lookup searched, for an error message."""
    return " or ".join(str(p) for p in paths)


def profile_arg(text: str) -> Path:
    """A command line's profile: a file, or the name of a shipped profile (`modbus-generic-rack`)."""
    p = Path(text)
    shipped = library_profiles_dir() / f"{text}.yaml"
    return shipped if not p.exists() and p.name == text and shipped.is_file() else p


def dbc_arg(text: str) -> Path:
    """A command line's DBC file: a file, or the name of one of the library's (`pylontech-sma-can.dbc`)."""
    p = Path(text)
    shipped = library_dbc_dir() / text
    return shipped if not p.exists() and p.name == text and shipped.is_file() else p
