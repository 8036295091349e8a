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
        cards = WebDriverWait(browser, 180).until(  # a hang guard: a busy 2-core machine is slow
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


def test_the_page_sends_an_image_a_mode_and_instructions(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from test_asks import LIGHTHOUSE, frame_png, recording_enhancer
    from vision_server import VisionChatServer

    with VisionChatServer(responder=lambda body: LIGHTHOUSE) as vlm:
        enhancer, engine = recording_enhancer(vlm=vlm.base_url)
        with Server(enhancer) as server:
            browser.get(server.url + "/")
            browser.find_element(By.ID, "prompt").send_keys("make it cinematic")
            Select(browser.find_element(By.ID, "n")).select_by_visible_text("1")
            Select(browser.find_element(By.ID, "mode")).select_by_visible_text("concise")
            browser.find_element(By.ID, "instructions").send_keys("slow push-in")
            browser.find_element(By.ID, "image").send_keys(frame_png(tmp_path / "frame.png"))
            browser.find_element(By.ID, "enhance").click()
            WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#variants .card"))
    turn = engine.user_turns()[0]  # (the second is the negative prompt's)
    assert "Idea: make it cinematic\nThe video starts from this image: " + LIGHTHOUSE in turn
    assert "Also: slow push-in" in turn and "Keep it short" in turn
    request = vlm.requests[-1]
    image_part = next(part for part in request["messages"][-1]["content"] if part["type"] == "image_url")
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
