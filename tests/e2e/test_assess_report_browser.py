"""The HTML report of `bms-gateway assess` in a real headless Chromium: every plot renders (its SVG has a size
and draws), the page loads nothing from elsewhere, and a screenshot of each plot is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.cli.main import main
from gateway.store.outbox import Outbox
from tests.assess_support import Synth
from tests.support.browser import browser_fixture  # noqa: F401  (a fixture)
from tests.support.png import pixels
from tests.support.waits import wait_for


def test_the_report_renders_its_plots(tmp_path: Path, browser: webdriver.Chrome) -> None:
    s = Synth(modules=1, cells_per_module=6, sensors=4, amps=150.0, weak={2: 0.85}).run(cycles=1, rest_s=300)
    box = Outbox(tmp_path / "s.db")
    for b in s.batches(gap=(3000, 3100), comm_loss=(3500, 3550)):
        b.created = int(b.ts[0])
        box.append([b])
    box.close()
    page = tmp_path / "report.html"
    assert main(["assess", "--store", str(tmp_path / "s.db"), "--nominal-ah", "100", "--html", str(page)]) == 0
    browser.get(page.as_uri())
    charts = wait_for(lambda: len(c := browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 7 and c, 30,
                      "the report's seven plots")  # fmt: skip
    titles = [c.get_attribute("aria-label") for c in charts]
    assert titles[:3] == ["Pack voltage", "Rack current (positive charges)",
                          "Cell voltage spread (highest − lowest cell)"]  # fmt: skip
    for chart in charts:
        size = chart.size
        assert size["width"] > 100 and size["height"] > 50, chart.get_attribute("aria-label")
        drawn = chart.find_elements(By.CSS_SELECTOR, "polyline, rect:not(.plot)")
        assert drawn, f"{chart.get_attribute('aria-label')}: nothing drawn"
        box_ = browser.execute_script("const b = arguments[0].getBBox(); return [b.width, b.height];", drawn[0])
        assert box_[0] > 0 or box_[1] > 0
        img = pixels(chart.screenshot_as_png)
        colors = np.unique(img[..., :3].reshape(-1, 3), axis=0)
        assert len(colors) > 10, f"{chart.get_attribute('aria-label')}: blank ({len(colors)} colours)"
        # Some pixels are the series' colours (blue, red, green), not only the frame's greys and white.
        rgb = img[..., :3].astype(int)
        saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 80
        assert saturated.sum() > 50, chart.get_attribute("aria-label")
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls == []  # nothing loaded besides the page itself
