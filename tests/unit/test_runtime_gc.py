"""The daemon's garbage-collector policy: once ready, what is alive is frozen and full collections are
spaced out; frozen objects are still freed when their last reference goes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.settings import load_config
from gateway.runtime import gcpolicy
from gateway.runtime.core import Runtime
from tests.runtime_support import run_until


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Thing:
    pass


def test_settle_freezes_and_frozen_objects_are_still_freed(restore_gc: None) -> None:
    thing = Thing()
    gone = weakref.ref(thing)
    gcpolicy.settle()
    assert gc.get_freeze_count() > 0 and gc.get_threshold() == (700, 10, gcpolicy.FULL_EVERY)
    del thing
    assert gone() is None  # reference counting frees it; only cycles wait for a collection
    gcpolicy.thaw()
    assert gc.get_freeze_count() == 0


async def test_the_daemon_settles_once_ready(tmp_path: Path, restore_gc: None) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "sources:\n  - {type: simulated, name: sim, interval: 0.02}\n"
        f"store: {{path: {tmp_path / 's.db'}}}\nhttp: {{enabled: false}}\n"
    )
    rt = Runtime(load_config(cfg))
    assert not rt.settle_gc  # tests and embedders keep the interpreter's defaults
    rt.settle_gc = True
    gc.unfreeze()
    await run_until(rt, lambda: rt.ready and rt.outbox.stored_samples() > 0)
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[2] == gcpolicy.FULL_EVERY
