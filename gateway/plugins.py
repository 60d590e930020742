"""Imports every protocol module so they register their profile kinds, checks, sources and sinks."""

from __future__ import annotations

import gateway.sim.source  # noqa: F401
