"""The demo page in a real browser: headless Debian chromium driven by Selenium against a live server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

from simcse.serve import ServeSettings, create_app  # noqa: E402
from simcse.use.api import SimCSE  # noqa: E402
from tests.helpers import SENTENCES  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium and chromedriver are not installed (make browser, or apt-get install chromium "
        "chromium-driver)",
    ),
]

INJECTED = '<img src=x onerror="document.title=1"> <b>bold</b> & co'
CORPUS = SENTENCES + [
    "a chef cooks pasta in a busy kitchen",
    "the stock market fell sharply on monday",
    "a little girl is reading a book in bed",
    "rain is falling on the roof of the house",
    "two men are playing chess in the park",
    "the airplane is landing at the airport",
    "a woman is slicing an onion",
    INJECTED,
]
WAIT_S = 30


@contextmanager
def live_server(model: SimCSE, compare: SimCSE | None = None, **options) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread (no signal handlers off the main thread)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(model, ServeSettings(port=port, **options), compare)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


@pytest.fixture(scope="module")
def model(embedded_model) -> SimCSE:
    m = SimCSE(str(embedded_model), device="cpu")
    m.build_index(CORPUS, index="flat")
    return m


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield d
    d.quit()


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition)


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true")


def search(driver, query: str, top_k: str) -> list[tuple[float, str]]:
    from selenium.webdriver.support.ui import Select

    box = by_id(driver, "query")
    box.clear()
    box.send_keys(query)
    Select(by_id(driver, "top-k")).select_by_visible_text(top_k)
    by_id(driver, "search-button").click()
    wait_for(driver, lambda d: "done" in (by_id(d, "search-status").get_attribute("class") or ""))
    rows = driver.find_elements("css selector", "#results li.result")
    return [
        (
            float(row.find_element("css selector", ".score").get_attribute("data-score")),
            row.find_element("css selector", ".sentence").text,
        )
        for row in rows
    ]


def test_search_and_similarity_in_the_browser(model, driver):
    with live_server(model) as url:
        open_page(driver, url)
        assert "index" in by_id(driver, "model-info").text and "384" in by_id(driver, "model-info").text
        assert not by_id(driver, "key-section").is_displayed()

        hits = search(driver, "A man plays the guitar.", "5")
        assert len(hits) == 5
        scores = [s for s, _ in hits]
        assert scores == sorted(scores, reverse=True)
        assert hits[0][1] == "a man is playing a guitar ."
        assert hits[0][0] == pytest.approx(
            model.search("A man plays the guitar.", top_k=1, threshold=None)[0][1], abs=1e-4
        )

        # corpus text is shown as text: the markup in the injected sentence is not interpreted
        everything = search(driver, "bold text and an image", "20")
        assert len(everything) == len(CORPUS)
        assert INJECTED in [sentence for _, sentence in everything]
        assert driver.find_elements("css selector", "#results img, #results b") == []
        assert driver.title == "SimCSE demo"

        a, b = "A man is playing a guitar.", "Someone plays an instrument."
        by_id(driver, "sentence-a").send_keys(a)
        by_id(driver, "sentence-b").send_keys(b)
        by_id(driver, "similarity-button").click()
        wait_for(driver, lambda d: by_id(d, "similarity-result").get_attribute("data-score"))
        shown = float(by_id(driver, "similarity-result").get_attribute("data-score"))
        assert shown == pytest.approx(model.similarity(a, b), abs=1e-4)
        assert "Cosine similarity" in by_id(driver, "similarity-result").text


def test_page_without_index_and_with_api_key(model, driver):
    bare = SimCSE(model.encoder)  # same model, no index
    with live_server(bare, api_key="let-me-in") as url:
        open_page(driver, url)
        assert "No index is loaded" in by_id(driver, "search-status").text
        assert not by_id(driver, "query").is_enabled() and not by_id(driver, "search-button").is_enabled()
        assert by_id(driver, "key-section").is_displayed()

        by_id(driver, "sentence-a").send_keys("a dog runs")
        by_id(driver, "sentence-b").send_keys("a puppy is running")
        by_id(driver, "similarity-button").click()  # no key yet: the server's 401 message is shown
        wait_for(driver, lambda d: "error" in (by_id(d, "similarity-result").get_attribute("class") or ""))
        assert "API key" in by_id(driver, "similarity-result").text

        by_id(driver, "api-key").send_keys("let-me-in")
        by_id(driver, "similarity-button").click()
        wait_for(driver, lambda d: by_id(d, "similarity-result").get_attribute("data-score"))
        assert float(by_id(driver, "similarity-result").get_attribute("data-score")) > 0.5


def test_two_models_side_by_side(model, driver):
    """serve --compare: both rankings, both similarities and one heatmap per model."""
    other = SimCSE(model.encoder.source.split(" (")[0], pooler="cls_before_pooler", device="cpu")
    other.build_index(CORPUS, index="flat")
    with live_server(model, other, model_name="mean", compare_name="cls") as url:
        open_page(driver, url)
        assert "mean" in by_id(driver, "model-info").text and "beside cls" in by_id(driver, "model-info").text
        query = "A man plays the guitar."
        search(driver, query, "5")
        for list_id, served in (("results", model), ("results-2", other)):
            rows = driver.find_elements("css selector", f"#{list_id} li.result")
            shown = [row.find_element("css selector", ".sentence").text for row in rows]
            assert shown == [s for s, _ in served.search(query, top_k=5, threshold=None)]
        headings = [h.text for h in driver.find_elements("css selector", "#rankings .model-name")]
        assert headings == ["mean", "cls"]

        a, b = "A man is playing a guitar.", "Someone plays an instrument."
        by_id(driver, "sentence-a").send_keys(a)
        by_id(driver, "sentence-b").send_keys(b)
        by_id(driver, "similarity-button").click()
        wait_for(driver, lambda d: by_id(d, "similarity-result").get_attribute("data-scores"))
        scores = [
            float(x) for x in by_id(driver, "similarity-result").get_attribute("data-scores").split(",")
        ]
        assert scores == pytest.approx([model.similarity(a, b), other.similarity(a, b)], abs=1e-4)

        by_id(driver, "heatmap-button").click()
        wait_for(driver, lambda d: "done" in (by_id(d, "heatmap-status").get_attribute("class") or ""))
        tables = driver.find_elements("css selector", "#heatmaps table.heatmap")
        assert len(tables) == 2
        sentences = [x for x in by_id(driver, "heatmap-sentences").get_attribute("value").splitlines() if x]
        for table, served in zip(tables, (model, other)):
            cells = table.find_elements("css selector", "td")
            assert len(cells) == len(sentences) ** 2
            shown = [float(c.get_attribute("data-score")) for c in cells]
            assert shown == pytest.approx(list(served.similarity(sentences, sentences).ravel()), abs=1e-4)
