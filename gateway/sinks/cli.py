"""Sub-commands of this area (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:  # argparse sub-parsers
    del sub


__all__ = ["argparse", "register"]
