"""The manual describes the gateway as it is built: the columnar data path and where each decoder, rule and
renderer lives, no name of the former design, command examples that are what the commands print, the
bench's CPU rows, the store's formats, and the page the "no configuration" error points to."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from bench import cpu
from bench.stats import Fig, Runs, fmt
from gateway.cli.main import NO_CONFIG, main
from gateway.store import codec, legacy
from tests.support.manual import DOCS, README, ROOT, manual_pages, manual_text

CAN_DATA = ROOT / "gateway" / "data" / "can"
LIBRARY = ROOT / "gateway" / "data"  # the shipped profiles and DBC files
MODBUS_RECORDING = ROOT / "tests" / "fixtures" / "modbus" / "generic-rack.rec.jsonl"


def section(text: str, heading: str) -> str:
    """From `heading` (a whole line) to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    nxt = re.search(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)
    return rest if nxt is None else rest[: nxt.start()]


def example_lines(page: Path, starts: str) -> list[str]:
    """The indented example lines of a page that start with `starts` (a command's output shown as is)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.startswith("    " + starts)]


def run(*argv: str) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, err.getvalue()
    return out.getvalue().splitlines()


# -- 1. the README's Architecture: the data path, and the one place of each decoder, rule and renderer


def test_the_architecture_names_the_one_module_of_each_decoder_rule_and_renderer() -> None:
    arch = section(README.read_text(encoding="utf-8"), "## Architecture")
    for stage in ("sources", "Batch", "bounded queue", "processors (alarms)", "outbox", "format 3", "sink runners"):
        assert stage in arch, stage
    rows = [line for line in arch.splitlines() if line.startswith("| ") and "`" in line]
    where = {line.split(" | ")[0].lstrip("| "): re.findall(r"`([\w/]+\.py)`", line) for line in rows}
    for role in (
        "Modbus block decoder",
        "CAN decoder",
        "alarm rules",
        "InfluxDB line-protocol renderer",
        "MQTT renderer",
        "store codec",
        "reconnect and retry backoff",
    ):
        (row,) = [modules for what, modules in where.items() if what.startswith(role)]
        assert row, role
        for module in row:
            assert (ROOT / "gateway" / module).is_file(), f"{role}: gateway/{module} does not exist"


def test_every_python_file_the_manual_names_exists() -> None:
    named = set(re.findall(r"`([\w./-]+\.py)`", manual_text()))
    assert len(named) > 20
    missing = [n for n in sorted(named) if not (ROOT / n).is_file() and not (ROOT / "gateway" / n).is_file()]
    assert missing == []


# -- 2. no statement of the former design; decode examples as the commands print them (numbers as floats)

FORMER = re.compile(
    r"\bLayout\b|`layout`|layoutpath|fast ?path|fastdecode|sampler|bydigest|lineplan|telemetryplan|floatrepr"
    r"|compact rows|generated (?:decoding )?function|JSON rows \(44|stores JSON rows|\bexec\b",
    re.IGNORECASE,
)


def test_the_manual_names_nothing_of_the_former_design() -> None:
    found = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in manual_pages()
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if FORMER.search(line)  # systemd's ExecStart= and the like are no match
    ]
    assert found == []


def test_the_can_decode_examples_are_what_can_decode_prints() -> None:
    page = DOCS / "can.md"
    dbc, capture = str(LIBRARY / "dbc" / "BMS.dbc"), str(CAN_DATA / "bms-dump-60s.log")
    frames = example_lines(page, '{"t":')
    signals = [x for x in frames if '"signals"' in x]
    samples = [x for x in frames if '"quantity"' in x]
    assert signals and samples
    assert set(signals) <= set(run("can", "decode", "--dbc", dbc, capture))
    profile = str(LIBRARY / "profiles" / "can-redpesk-bms.yaml")
    assert set(samples) <= set(run("can", "decode", "--dbc", dbc, capture, "--profile", profile))
    assert any(isinstance(json.loads(x)["value"], float) and json.loads(x)["value"].is_integer() for x in samples)


def test_the_modbus_decode_examples_are_what_modbus_decode_prints() -> None:
    shown = example_lines(DOCS / "modbus.md", '{"unit_id":')
    assert len(shown) >= 2
    profile = str(LIBRARY / "profiles" / "modbus-generic-rack.yaml")
    printed = run("modbus", "decode", "-p", profile, "--recording", str(MODBUS_RECORDING), "--rack", "rack-01")
    assert set(shown) <= set(printed)
    values = [json.loads(x)["value"] for x in shown]
    assert 0.0 in values and all(type(v) is not int for v in values)  # a flag is 0.0: numbers are floats


# -- 3. docs/performance.md explains every CPU row and note the bench prints


def test_the_performance_page_explains_the_bench_cpu_rows() -> None:
    page = (DOCS / "performance.md").read_text(encoding="utf-8")
    text = " ".join(page.split())
    gw, naive = Runs(), Runs()
    gw.add(cpu_pct=40.0, peers_pct=50.0, own_pct=90.0, idle_pct=8.0, other_pct=2.0)
    naive.add(cpu_pct=10.0, peers_pct=20.0, own_pct=30.0, idle_pct=5.0, other_pct=65.0)
    for row in cpu.rows("modbus", "", gw, naive):
        assert f"`{row.metric}`" in page, row.metric
    assert f"*{cpu.SATURATED}*" in text
    assert f"more than {cpu.SATURATION_PCT:.0f} % of the machine" in text
    busy = cpu.flag(naive)
    assert busy.startswith("machine busy (65 % other load)")
    assert "*machine busy (N % other load): not a valid measurement of the gateway*" in text
    assert "*saturated in k of n runs*" in text
    assert "`sustained frames/s with headroom`" in text
    # the range of a median, as the table prints it
    assert f"`{fmt(Fig([16000.0, 25000.0, 25000.0]))}`" in text
    assert "`gateway_min`" in text and "`gateway_max`" in text
    # the example line is what the bench prints for those figures
    (example,) = [line.strip() for line in page.splitlines() if line.startswith("    modbus: gateway CPU")]
    m = re.fullmatch(
        r"modbus: gateway CPU ([\d.]+) % of the machine \(([\d.]+) % of a core\); peers ([\d.]+) % of the machine "
        r"\(% of a core: (.*)\); machine idle ([\d.]+) %, other load ([\d.]+) %",
        example,
    )
    assert m is not None, example
    runs = Runs()
    runs.add(cpu_pct=float(m[1]), peers_pct=float(m[3]), idle_pct=float(m[5]), other_pct=float(m[6]))
    runs.add(own_pct=float(m[1]) + float(m[3]), **{cpu.PEER + "gateway": float(m[2])})
    for peer in m[4].split(", "):
        name, value = peer.rsplit(" ", 1)
        runs.add(**{cpu.PEER + name: float(value)})
    assert cpu.line("modbus", runs, "gateway") == example


def test_the_old_headline_figures_are_marked_as_before_the_columnar_change() -> None:
    figures = section((DOCS / "performance.md").read_text(encoding="utf-8"), "## Figures")
    header = next(line for line in figures.splitlines() if line.startswith("| scenario"))
    assert "| columnar |" in header
    assert re.search(r"\| before the columnar change \(\d{4}-\d\d-\d\d\) \|", header)


# -- 4. the "no configuration file" error points to the configuration reference


def test_no_config_names_the_configuration_page_of_the_manual() -> None:
    (page,) = re.findall(r"[\w/.-]+\.md", NO_CONFIG)
    toc = section(README.read_text(encoding="utf-8"), "## The manual")
    assert f"[Configuration]({page})" in toc
    assert "## " in (ROOT / page).read_text(encoding="utf-8")
    assert (ROOT / "config" / "gateway.yaml").is_file()  # the example it names


# -- 5. docs/delivery.md: the store's formats, what a row holds, compatibility


def test_the_store_format_section_names_each_format_and_what_reads_it() -> None:
    store = section((DOCS / "delivery.md").read_text(encoding="utf-8"), "### Store format")
    text = " ".join(store.split())
    assert codec.FORMAT == 3 and legacy.COMPACT_VERSION == 2
    assert "| 1, JSON |" in text
    assert f"| {legacy.COMPACT_VERSION}, compact |" in text
    assert f"| {codec.FORMAT}, columns | this version |" in text
    assert f"`{codec.MAGIC.decode()}`" in text and "CRC-32" in text
    assert "A store written by an older version opens in this one" in text
    assert f"cannot be read by versions before format {codec.FORMAT}" in text
