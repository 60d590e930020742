"""The tests' one store reader and one site builder, against the gateway's own Outbox and config loader."""

from __future__ import annotations

from pathlib import Path

from gateway.config.settings import load_config
from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox
from tests.support.site import PLAIN_RACK, write_config
from tests.support.store import SampleKey, last_seq, sample_counts, samples_by_quantity, samples_by_source


def test_store_reader_reads_what_the_outbox_stored(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert last_seq(db) == 0  # no file yet
    ob = Outbox(db)
    r1 = [Sample(1, "soc", 50.0, "%", "good", "r1"), Sample(1, "cell_voltage", 3.3, "V", "good", "r1", 1, 2)]
    ob.append([Batch.of_samples("r1", r1, device="r1", created=1)])
    ob.append([Batch.of_samples("r2", [Sample(2, "soc", 60.0, "%", "stale", "r2")], device="r2", created=2)])
    ob.close()
    assert last_seq(db) == 2
    assert sample_counts(db) == {"r1": 2, "r2": 1}
    assert [s.value for s in samples_by_source(db)["r1"]] == [50.0, 3.3]
    assert samples_by_quantity(db, rack="r1") == {
        SampleKey("soc", 50.0, "good", None, None): 1,
        ("cell_voltage", 3.3, "good", 1, 2): 1,  # a plain tuple finds the same count
    }
    assert samples_by_quantity(db)[("soc", 60.0, "stale", None, None)] == 1


def test_waiting_on_a_store_being_made_writes_nothing_to_it(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    db.touch()  # what a starting gateway has made so far: the file, without its tables
    assert last_seq(db) == 0
    assert db.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]
    ob = Outbox(db)  # the gateway's own open goes on from there
    ob.append([Batch.of_samples("r1", [Sample(1, "soc", 50.0, "%", "good", "r1")], device="r1", created=1)])
    assert last_seq(db) == 1  # read beside the open store
    ob.close()


def test_site_builder_writes_a_config_the_gateway_loads(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        ["rack-0", "rack-1"],
        http_port=8080,
        grace=7,
        rack={**PLAIN_RACK, "truth_file": None},
        store={"max_bytes": 10_000_000},
        extra="logging: {level: debug}\n",
    )
    loaded = load_config(cfg).config
    assert [s.name for s in loaded.sources] == ["rack-0", "rack-1"]
    assert loaded.store.path == tmp_path / "store.db" and loaded.store.max_bytes == 10_000_000
    assert loaded.runtime.grace_period == 7 and loaded.http.port == 8080
    text = cfg.read_text()
    assert "cells_per_module: 8" in text and "seed: 2" in text and "truth_file" not in text and "speed" not in text
