"""Garbage-collector settings for a process that holds hundreds of thousands of samples.

Every `Sample` is a tuple subclass, which CPython's collector tracks for its whole life (it untracks
only plain tuples of plain values). A 100-rack site holds some 300,000 samples at any time (the source
queue, the decoded-row cache, the live state) besides some 500,000 objects built at start (profiles,
plans, caches). With the default thresholds a full collection walked all of them every few seconds:
pauses of 0.3–1 s that block the event loop (Modbus cycles start late) and about 15 % of the CPU.

`settle()`, called once the gateway runs (and again after a reload), collects once, moves every object
alive then into the permanent generation (`gc.freeze()`: the collector no longer walks them; they are
still freed when their last reference goes) and lets full collections run only every
`FULL_EVERY` collections of the middle generation (several minutes at 100,000 samples/s). Young
collections, which find nearly all cyclic garbage (it dies young), run as before.
"""

from __future__ import annotations

import gc

YOUNG = 700  # the default: allocations between collections of the youngest generation
MIDDLE = 10  # the default: young collections between collections of the middle generation
FULL_EVERY = 5000  # middle collections between full ones (default 10)


def settle() -> None:
    """Collect once, freeze what is alive, and space out full collections (see the module doc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, FULL_EVERY)


def thaw() -> None:
    """Before a reload replaces sources and sinks: what it lets go must be collectable again."""
    gc.unfreeze()
