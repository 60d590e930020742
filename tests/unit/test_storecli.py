"""`bms-gateway export` and `tail`: what the local store holds, as JSON lines, CSV or line protocol."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.cli.store import parse_time
from gateway.model import Batch, DeviceState, DeviceStatus, Quality, Sample
from gateway.store.outbox import Outbox
from tests.store_support import damage_rows

T0 = 1_700_000_000_000_000_000


def fill(path: Path) -> Path:
    ob = Outbox(path)
    for i in range(3):
        ts = T0 + i * 1_000_000_000
        ob.append(
            [
                Batch.of_samples(
                    "sim",
                    [
                        Sample(ts, "soc", 50.0 + i, "%", Quality.GOOD, "r1"),
                        Sample(ts, "cell_voltage", 3.3, "V", Quality.STALE, "r1", 1, 2),
                        Sample(ts, "soc", 70.0, "%", Quality.GOOD, "r2"),
                    ],
                    created=ts,
                    status=DeviceStatus("r1", DeviceState.ONLINE, "", ts) if i == 0 else None,
                )
            ]
        )
    ob.close()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return fill(tmp_path / "s.db")


def test_export_jsonl_with_rack_and_time_filter(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = str((T0 + 1_000_000_000) / 1e9)
    assert main(["export", "--store", str(store), "--site", "s", "--rack", "r1", "--since", since]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and "exported 4 samples" in err
    assert {r["rack"] for r in rows} == {"r1"}
    cell = next(r for r in rows if r["quantity"] == "cell_voltage")
    assert cell == {**cell, "module": 1, "cell": 2, "unit": "V", "quality": "stale", "site": "s", "value": 3.3}
    assert rows[0]["t"].startswith("2023-11-14T22:13:21")


def test_export_csv_has_a_header_and_every_sample(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--store", str(store), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 9
    assert rows[0]["quantity"] == "soc" and rows[0]["value"] == "50.0"


def test_export_line_protocol(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--store", str(store), "--format", "lp", "--rack", "r2", "--site", "s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(
        "rack=r2" in line and "site=s" in line and line.endswith(str(T0 + i * 1_000_000_000))
        for i, line in enumerate(lines)
    )


def test_tail_shows_the_newest_batches_and_status(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--store", str(store), "-n", "3", "--rack", "r1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum("soc" in line for line in out) == 3
    assert any("[stale]" in line and "r1/m1/c2" in line for line in out)
    assert any(line.startswith("-- r1 online") for line in out)


def test_missing_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "--store", str(tmp_path / "nope.db")])
    assert info.value.code == 2
    assert "no store at" in capsys.readouterr().err


def test_parse_time_forms() -> None:
    assert parse_time("1700000000") == T0
    assert parse_time("2023-11-14T22:13:20") == T0
    assert parse_time("2023-11-14T23:13:20+01:00") == T0
    assert abs(parse_time("10m") - (parse_time("0s") - 600 * 10**9)) < 10**9


def test_export_and_tail_skip_damaged_rows_and_name_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = fill(tmp_path / "s.db")
    damage_rows(path, [2])
    assert main(["export", "--store", str(path), "--site", "s"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 6 and {json.loads(x)["value"] for x in out.splitlines()} >= {50.0, 52.0}
    assert "skipped damaged row seq 2:" in err and "exported 6 samples (1 damaged rows skipped)" in err
    assert main(["tail", "--store", str(path), "-n", "3"]) == 0
    out, err = capsys.readouterr()
    assert sum("soc" in line for line in out.splitlines()) == 4 and "skipped damaged row seq 2:" in err
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM batches").fetchone() == (3,)  # a reading tool moves nothing
    con.close()


def test_export_without_a_config_tags_samples_with_the_site_the_store_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.db"
    Outbox(path, site="plant-7").close()  # what the daemon does with its site.name
    fill(path)
    assert main(["export", "--store", str(path)]) == 0
    assert {json.loads(line)["site"] for line in capsys.readouterr().out.splitlines()} == {"plant-7"}
    assert main(["export", "--store", str(path), "--format", "lp"]) == 0
    assert all("site=plant-7" in line for line in capsys.readouterr().out.splitlines())
    assert main(["export", "--store", str(path), "--site", "other"]) == 0  # --site still wins
    assert {json.loads(line)["site"] for line in capsys.readouterr().out.splitlines()} == {"other"}
    old = fill(tmp_path / "old.db")  # written before stores recorded their site
    assert main(["export", "--store", str(old)]) == 0
    out, err = capsys.readouterr()
    assert {json.loads(line)["site"] for line in out.splitlines()} == {"site"} and "does not record its site" in err
