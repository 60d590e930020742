"""The live status page in a real headless browser (Debian's chromium + chromedriver, via selenium).

The page is loaded from a running `bms-gateway run`; the test waits (with a deadline) until the
racks and the points table are drawn, then until the simulated values change by themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.ops_support import start_gateway, stop, wait_http
from tests.servers import free_port
from tests.support.browser import browser_fixture  # noqa: F401  (a fixture)
from tests.support.site import write_config
from tests.support.waits import wait_for

T = TypeVar("T")


def eventually(fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    # An exception means the page is being redrawn under us: look again.
    return wait_for(fn, timeout, "the page to reach the expected state", retry_on=(Exception,))


def cell_text(driver: webdriver.Chrome, key: str, column: int) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#points tbody tr[data-key="{key}"]')
    return rows[0].find_elements(By.TAG_NAME, "td")[column].text if rows else None


def row_texts(driver: webdriver.Chrome, selector: str) -> list[str] | None:
    rows = driver.find_elements(By.CSS_SELECTOR, selector)
    return [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")] if rows else None


def alarm_rows(driver: webdriver.Chrome) -> list[list[str]] | None:
    rows = driver.find_elements(By.CSS_SELECTOR, "#alarms tbody tr[data-alarm]")
    return [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows] or None


def test_status_page_shows_racks_points_and_live_values(tmp_path: Path, browser: webdriver.Chrome) -> None:
    port = free_port()
    alarms = "alarms: {overrides: {cell_high_temperature: {on_delay: 0}}}\n"
    cfg = write_config(tmp_path, ["rack-a", "rack-b"], http_port=port, interval=0.1, extra=alarms)
    # rack-b stands in a hot room: the default rules raise a high-temperature alarm for it.
    cfg.write_text(cfg.read_text().replace("    name: rack-b\n", "    name: rack-b\n    ambient: 50\n"))
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        browser.get(f"http://127.0.0.1:{port}/")
        assert browser.title == "bms-gateway status"
        racks = eventually(
            lambda: len(r := browser.find_elements(By.CSS_SELECTOR, "#racks tbody tr[data-rack]")) == 2 and r
        )
        assert [r.get_attribute("data-rack") for r in racks] == ["rack-a", "rack-b"]
        summary = "2 online, 0 degraded, 0 offline of 2 racks"  # racks by state, as /api/status counts them
        assert eventually(lambda: summary in browser.find_element(By.ID, "summary").text)
        # Every point has its row: value, unit, quality and age.
        n_rows = eventually(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#points tbody tr[data-key]")))
        assert n_rows > 2 * 8  # at least the 8 cells of each rack, plus rack-level quantities
        tds = eventually(lambda: row_texts(browser, '#points tbody tr[data-key="rack-a|cell_voltage|1|1"]'))
        assert tds[0:4] == ["rack-a", "cell_voltage", "1", "1"]
        assert float(tds[4]) > 2.0 and tds[5] == "V" and tds[6] == "good" and float(tds[7]) >= 0
        # The values change by themselves (the page polls; the simulated rack charges and discharges).
        first = eventually(lambda: cell_text(browser, "rack-a|soc||", 4))
        changed = eventually(lambda: (v := cell_text(browser, "rack-a|soc||", 4)) not in (None, first) and v)
        assert float(changed) != float(first)
        updates = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0)
        assert eventually(
            lambda: int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) > updates
        )
        # The rack filter narrows the table to one rack.
        browser.find_element(By.CSS_SELECTOR, '#rack-filter option[value="rack-b"]').click()
        assert eventually(
            lambda: (
                {
                    r.get_attribute("data-key").split("|")[0]
                    for r in browser.find_elements(By.CSS_SELECTOR, "#points tbody tr[data-key]")
                }
                == {"rack-b"}
            )
        )
        # Rows are read as text in one go: a redraw between finding a row and reading it means "look again".
        alarm = eventually(lambda: alarm_rows(browser))
        cells = alarm[0]
        assert (
            cells[0] == "rack-b" and "temperature" in cells[1] and cells[2] in ("warning", "minor", "major", "critical")
        )
        assert not [a for a in alarm if a[0] == "rack-a"]
        # Every resource the page loaded came from the gateway itself (no CDN).
        urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(u.startswith(f"http://127.0.0.1:{port}/") for u in urls)
        # When the gateway goes away, the page says so instead of showing stale numbers silently.
        assert stop(proc) == 0
        assert eventually(lambda: "unreachable" in browser.find_element(By.ID, "conn").text)
    finally:
        stop(proc)
