"""The web playground in a real browser (headless Chromium driven by Selenium): strategies side by side,
streamed text, per-token probabilities on hover; a classification run's page shows labels. Skipped, with
the reason, where Chromium or its driver is absent (Debian: `apt-get install chromium chromium-driver`)."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from lmforge.cli import main
from lmforge.runs.served_task import served_task
from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions
from tests.serve.conftest import running, served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def test_the_page_is_served_and_knows_the_model(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"model": "tiny"' in page.text and '"chat": true' in page.text and "__LMFORGE_INFO__" not in page.text


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless Chromium is absent: `apt-get install chromium chromium-driver` runs the browser tests")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is absent: pip install -e .[dev]")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def slow_chat_server(tiny_chat_llama):
    """A chat server whose model takes 15 ms a forward pass, so streamed text arrives piece by piece."""
    model = served(tiny_chat_llama)
    model.model.register_forward_hook(lambda module, args, output: time.sleep(0.015))
    with running(create_app(model, ServeOptions(api_key="sekret"))) as url:
        yield url


WATCH_STREAM = """
window.lengths = [];
new MutationObserver(() => {
  const column = document.querySelector('.column[data-strategy=greedy]');
  if (column && !column.dataset.done) window.lengths.push(column.querySelector('.text').textContent.length);
}).observe(document.getElementById('outputs'), {subtree: true, childList: true, characterData: true});
"""


def test_strategies_stream_side_by_side_with_probabilities_on_hover(browser, slow_chat_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(slow_chat_server + "/")
    browser.find_element(By.ID, "api-key").send_keys("sekret")
    browser.find_element(By.CSS_SELECTOR, "input[name=strategy][value=beam]").click()  # greedy, sampling, beam
    max_tokens = browser.find_element(By.ID, "max_tokens")
    max_tokens.clear()
    max_tokens.send_keys("24")
    browser.execute_script(WATCH_STREAM)
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".column[data-done='1']")) == 3)
    columns = {c.get_attribute("data-strategy"): c for c in browser.find_elements(By.CSS_SELECTOR, ".column")}
    assert set(columns) == {"greedy", "sample", "beam"}
    streamed = [n for n in browser.execute_script("return window.lengths") if n > 0]
    assert len(set(streamed)) >= 3  # the greedy text grew piece by piece before the answer was complete
    for column in columns.values():
        tokens = column.find_elements(By.CSS_SELECTOR, ".tok")
        assert tokens, column.text
        assert tokens[0].get_attribute("title").startswith("p = ")  # what hovering shows
        assert 0 < float(tokens[0].get_attribute("data-p")) <= 1
        assert "tok/s" in column.find_element(By.CSS_SELECTOR, ".meta").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")


def test_a_wrong_key_shows_the_servers_message(browser, slow_chat_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(slow_chat_server + "/")
    browser.execute_script("localStorage.clear()")
    key = browser.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys("wrong")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".error"))
    assert "API key" in browser.find_element(By.CSS_SELECTOR, ".error").text


def test_a_classification_run_shows_its_label_and_probabilities(browser, tiny_config, tmp_path, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert main(["train", str(tiny_config)]) == 0
    capsys.readouterr()
    with running(create_app(served_task(tmp_path / "run", "sentiment"))) as url:
        expected = httpx.post(f"{url}/v1/classify", json={"model": "sentiment", "input": "a great film"}).json()["data"][0]
        browser.get(url + "/")
        browser.find_element(By.ID, "task-text").send_keys("a great film")
        browser.find_element(By.ID, "analyse").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "predicted"))
        assert browser.find_element(By.ID, "predicted").text == expected["label"]
        rows = browser.find_elements(By.CSS_SELECTOR, "#task-output tr")
        assert len(rows) == 1 + len(expected["probabilities"])
