"""A headless Chromium driven by selenium (Debian's chromium + chromedriver, installed by the README's test
command): the `browser` fixture of the tests that open a page
(import `browser_fixture`, take `browser`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (name if Path(name).exists() else None)
        if found:
            return found
    raise RuntimeError(f"{names[0]} is not installed: run the README's test command, which installs it")


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[webdriver.Chrome]:
    """Import `browser_fixture` into a test module; its tests take `browser`."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary("chromium", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900"):
        opts.add_argument(arg)
    service = Service(executable_path=binary("chromedriver", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    yield driver
    driver.quit()
