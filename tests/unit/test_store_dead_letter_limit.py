"""`store.max_dead_letters` reaches the running store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config.settings import StoreConfig, load_config
from gateway.runtime.core import Runtime


def test_the_limit_is_configurable_and_reaches_the_outbox(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "site: {name: s}\n"
        "sources:\n  - {type: simulated, name: r1}\n"
        f"store: {{path: {tmp_path / 's.db'}, max_dead_letters: 250}}\n"
        "http: {enabled: false}\n"
    )
    rt = Runtime(load_config(cfg))
    try:
        assert rt.outbox.max_dead_letters == 250
    finally:
        rt.outbox.close()
    assert StoreConfig().max_dead_letters == 100_000
    with pytest.raises(ValidationError):
        StoreConfig(max_dead_letters=10)
