"""Debian's chromium in headless mode with its chromedriver, through Selenium, for the browser tests.
`make test` installs both when they are missing (`make browser`)."""

from __future__ import annotations

import shutil

import pytest


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("the browser tests need chromium and chromedriver: `make browser` (apt-get install them)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver
