"""The web page of `enhancer serve` in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium): type a prompt, Enhance, see the variants side by side, edit one and watch the drift marks follow,
copy it. `make test` installs chromium when it is missing (Debian); elsewhere install it yourself."""

from __future__ import annotations

import pytest

from enhancer.enhance import Enhancer
from enhancer.serve.api import Server

from browser import chromium


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_enhance_edit_and_copy_in_the_browser(browser, tiny_model_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    enhancer = Enhancer.load(model=str(tiny_model_dir), max_new_tokens=12, log=lambda m: None)
    with Server(enhancer, api_key="k3y") as server:
        browser.get(server.url + "/")
        assert "enhancer" in browser.title
        assert "wan" in [o.text for o in Select(browser.find_element(By.ID, "target")).options]
        browser.find_element(By.ID, "prompt").send_keys("three red kites over a beach")
        Select(browser.find_element(By.ID, "n")).select_by_visible_text("2")
        browser.find_element(By.ID, "enhance").click()
        # the server wants a key: the page asks for it, keeps it, and the next Enhance goes through
        WebDriverWait(browser, 30).until(seen.visibility_of_element_located((By.ID, "key")))
        browser.find_element(By.ID, "key").send_keys("k3y")
        browser.find_element(By.ID, "save-key").click()
        browser.find_element(By.ID, "enhance").click()
        cards = WebDriverWait(browser, 60).until(
            lambda d: (found := d.find_elements(By.CSS_SELECTOR, "#variants .card")) and len(found) == 2 and found
        )
        assert all(card.find_element(By.TAG_NAME, "textarea").get_attribute("value") for card in cards)

        first = cards[0].find_element(By.TAG_NAME, "textarea")
        first.clear()
        first.send_keys("Three red kites over a beach at dawn, a slow dolly shot.")
        kept = [s.text for s in cards[0].find_elements(By.CSS_SELECTOR, ".marked .kept")]
        added = [s.text for s in cards[0].find_elements(By.CSS_SELECTOR, ".marked .added")]
        assert {"Three", "red", "kites", "beach"} <= set(kept) and {"dawn", "slow", "dolly"} <= set(added)
        assert cards[0].find_element(By.CLASS_NAME, "lost").text == ""
        first.clear()
        first.send_keys("Three red kites over the sea.")  # the beach is gone: the page says so
        assert cards[0].find_element(By.CLASS_NAME, "lost").text == "dropped: beach"

        cards[0].find_element(By.CLASS_NAME, "copy").click()
        WebDriverWait(browser, 10).until(lambda d: "copied variant 1" in d.find_element(By.ID, "status").text)
        assert cards[0].get_attribute("data-copied") == "Three red kites over the sea."
