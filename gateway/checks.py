"""Checks of a configuration that need its profiles resolved (DBC files, read plans, ...).

Each protocol registers a function `check(loaded, data) -> list[Problem]`; `validate` and start-up
run every one, so a problem shows at `bms-gateway validate`, never as a crash at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import Problem

if TYPE_CHECKING:
    from gateway.config import LoadedConfig

Check = Callable[["LoadedConfig", Any], list[Problem]]
CHECKS: list[Check] = []


def register_check(check: Check) -> Check:
    CHECKS.append(check)
    return check


def check_config(loaded: LoadedConfig, data: Any) -> list[Problem]:
    import gateway.plugins  # noqa: F401  (registers every protocol's checks)

    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(loaded, data))
    return problems
