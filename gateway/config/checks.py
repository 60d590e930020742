"""Checks of a configuration that need its profiles resolved (DBC files, read plans, ...).

Each protocol has a function `check(loaded, data) -> list[Problem]`, named in the composition root
(`gateway.app.CHECKS`); `validate` and start-up run every one, so a problem shows at
`bms-gateway validate`, never as a crash at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway import app
from gateway.errors import Problem

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig


def check_config(loaded: LoadedConfig, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    for check in app.checks({src.type for src in loaded.config.sources}):
        problems.extend(check(loaded, data))
    return problems
