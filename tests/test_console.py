"""The web console at `/`, driven in headless Chromium against the real service and TorchServe.

The browser is Debian's `chromium` with its `chromium-driver` (`.ci/run` installs both when they
are missing); Selenium talks to that driver, nothing is downloaded. One service and one browser
per module; the tests run in file order, as an admin would: key, upload, train, try, roll back,
monitoring. Each test saves a screenshot in its temporary directory.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_service import Service, tickets_csv
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

API_KEY = "console-key-0123456789abcdef"
BROWSER = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
WAIT_S = 20.0
TRAIN_WAIT_S = 300.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("console") / "var", api_key=API_KEY)
    service.start()
    try:
        yield service
    finally:
        code = service.stop()
        service.cleanup()
    assert code == 0, service.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    binary = next((path for name in BROWSER if (path := shutil.which(name))), None)
    driver_path = shutil.which(DRIVER)
    if binary is None or driver_path is None:
        pytest.fail(
            "the console tests need Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (.ci/run does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    _BROWSERS.append(driver)
    try:
        yield driver
    finally:
        _BROWSERS.remove(driver)
        driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = WAIT_S, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (WebDriverException, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}: {last}; {_page_state()}")


_BROWSERS: list[WebDriver] = []


def _page_state() -> str:
    """What the page shows, for a failure message."""
    if not _BROWSERS:
        return ""
    browser = _BROWSERS[0]
    return (
        f"error box: {browser.find_element(By.ID, 'error').text!r}; main: "
        f"{browser.find_element(By.ID, 'main').text[:1500]!r}; console log: "
        f"{browser.get_log('browser')[-5:]}"
    )


def open_page(browser: WebDriver, service: Service, page: str) -> None:
    browser.get(f"{service.base}/#{page}")
    wait_for(lambda: browser.find_element(By.ID, f"page-{page}").is_displayed(), what=page)


def text_of(browser: WebDriver, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def screenshot(browser: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
    return path


def accept_confirm(browser: WebDriver) -> str:
    def alert() -> Any:
        try:
            return browser.switch_to.alert
        except NoAlertPresentException:
            return None

    dialog = wait_for(alert, what="a confirmation")
    text = dialog.text
    dialog.accept()
    return text


def error_box(browser: WebDriver) -> WebElement:
    return browser.find_element(By.ID, "error")


def test_api_errors_are_shown_as_the_api_words_them(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    page = service.get("/", headers={})  # the console itself needs no key
    assert page.status_code == 200 and "ticketserve console" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    open_page(browser, service, "data")
    refused = service.get("/api/v1/train-data", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    # No key entered yet: the API's own 401 message.
    wait_for(lambda: error_box(browser).is_displayed(), what="the error box")
    assert error_box(browser).text == refused.json()["error"]["message"]
    screenshot(browser, tmp_path, "no-key")
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.ENTER)
    wait_for(lambda: not error_box(browser).is_displayed(), what="the error to go")
    wait_for(lambda: "tickets\n0" in text_of(browser, "stored"), what="the empty store")


def test_upload_by_drag_and_drop_shows_the_row_report(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    content = tickets_csv(150, seed=81).decode() + ",,Billing and Payments,high,en\n"
    open_page(browser, service, "data")
    # A real drop event with a File, as the browser makes one when a file is dragged in.
    browser.execute_script(
        """const [text, zone] = arguments;
        const data = new DataTransfer();
        data.items.add(new File([text], "tickets.csv", {type: "text/csv"}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));""",
        content,
        browser.find_element(By.ID, "drop-zone"),
    )
    report = wait_for(
        lambda: (text := text_of(browser, "upload-report")) and "Rejected rows" in text and text,
        what="the upload report",
    )
    stored = service.get("/api/v1/train-data").json()
    assert stored["rows"] == 150
    assert "rows read\n151" in report and "accepted\n150" in report and "rejected\n1" in report
    rejected = browser.find_elements(By.CSS_SELECTOR, "#upload-report tbody tr")[0].text
    assert rejected.startswith("151 ")  # the row number, then the API's reason
    for label, count in stored["label_counts"]["queue"].items():
        assert f"{label} {count}" in text_of(browser, "stored")
    screenshot(browser, tmp_path, "data")


def test_train_from_the_console_and_watch_the_job_finish(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    open_page(browser, service, "train")
    bounds = service.get("/openapi.json").json()["components"]["schemas"]["TrainRequest"]
    length = browser.find_element(By.CSS_SELECTOR, '#train-form [name="max_length"]')
    declared = next(p for p in bounds["properties"]["max_length"]["anyOf"] if "maximum" in p)
    wait_for(
        lambda: float(length.get_attribute("max") or "nan") == declared["maximum"],
        what="the bounds",
    )
    assert float(length.get_attribute("min")) == declared["minimum"]
    Select(browser.find_element(By.NAME, "mode")).select_by_value("fast")
    Select(browser.find_element(By.NAME, "base_model")).select_by_value("all-MiniLM-L6-v2")
    length.send_keys("64")
    browser.find_element(By.ID, "train-button").click()
    wait_for(lambda: "Job " in text_of(browser, "job"), what="the job")
    done = wait_for(
        lambda: "succeeded" in (t := text_of(browser, "job")) and t,
        timeout=TRAIN_WAIT_S,
        what="the job to succeed",
    )
    assert "new version\n1" in done and "default\nyes" in done, done
    assert "fast" in done and "validation macro-F1" in done
    job = service.get("/api/v1/train").json()
    assert job["params"]["max_length"] == 64 and job["params"]["base_model"] == "all-MiniLM-L6-v2"
    screenshot(browser, tmp_path, "train")


def test_cancel_a_job_from_the_console(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    """A fine-tune of 20 epochs (minutes here): the page shows its live progress as the API
    reports it, and Cancel stops it long before it could end by itself."""
    open_page(browser, service, "train")
    wait_for(lambda: "succeeded" in text_of(browser, "job"), what="the last job")
    Select(browser.find_element(By.NAME, "mode")).select_by_value("full")
    Select(browser.find_element(By.NAME, "base_model")).select_by_value("all-MiniLM-L6-v2")
    for name, value in (("epochs", "20"), ("max_length", "64")):
        field = browser.find_element(By.CSS_SELECTOR, f'#train-form [name="{name}"]')
        field.clear()  # the form keeps what the previous test typed
        field.send_keys(value)
    browser.find_element(By.ID, "train-button").click()
    job_id = wait_for(
        lambda: (
            (j := service.get("/api/v1/train").json())["status"] == "running"
            and j["progress"]
            and j["job_id"]
        ),
        what="the job's first progress",
    )
    line = re.compile(r"(embedding|fitting heads|fine-tuning): epoch \d+/(\d+), step \d+/\d+")
    shown = wait_for(lambda: line.search(text_of(browser, "job")), what="the live progress")
    api = service.get(f"/api/v1/train/{job_id}").json()
    assert shown.group(1) in ("embedding", "fitting heads", "fine-tuning")
    assert int(shown.group(2)) in (1, 20)  # the stage's epochs: 1 before the fine-tune
    bar = browser.find_element(By.CSS_SELECTOR, "#job progress")
    assert 0 <= float(bar.get_attribute("value")) <= float(bar.get_attribute("max"))
    assert api["status"] == "running" and f"Job {job_id}" in text_of(browser, "job")
    cancel = wait_for(lambda: browser.find_element(By.ID, "cancel-job"), what="a Cancel button")
    cancel.click()
    assert "Cancel training job" in accept_confirm(browser)
    wait_for(lambda: "cancelled" in text_of(browser, "job"), what="the job cancelled")
    assert service.get("/api/v1/train").json()["status"] == "cancelled"
    assert browser.find_element(By.ID, "train-button").is_enabled()
    screenshot(browser, tmp_path, "cancelled")


def test_try_a_ticket_and_send_a_correction(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    service.wait_ready()
    open_page(browser, service, "try")
    tickets = ["I was charged twice for invoice 4411", "The laptop screen flickers and goes black"]
    box = browser.find_element(By.ID, "try-text")
    box.send_keys(f"{tickets[0]}\n---\n{tickets[1]}")
    browser.find_element(By.ID, "try-button").click()
    answers = wait_for(
        lambda: (
            len(found := browser.find_elements(By.CSS_SELECTOR, "#answers .answer")) == 2 and found
        ),
        what="two answers",
    )
    api = service.post(
        "/api/v1/classify", json={"tickets": [{"ticket_data": t} for t in tickets]}
    ).json()["predictions"]
    for shown, expected in zip(answers, api, strict=True):
        assert (
            expected["queue"]["label"] in shown.text and expected["priority"]["label"] in shown.text
        )
    select = Select(answers[0].find_element(By.CSS_SELECTOR, 'select[name="queue"]'))
    other = next(o.text for o in select.options if o.text != api[0]["queue"]["model_label"])
    select.select_by_visible_text(other)
    answers[0].find_element(By.CSS_SELECTOR, ".correction button").click()
    wait_for(lambda: "correction saved" in answers[0].text, what="the correction")
    [saved] = service.get("/api/v1/feedback").json()["feedback"]
    assert saved["labels"]["queue"] == other
    screenshot(browser, tmp_path, "try")


def test_roll_back_to_the_first_version(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    job = service.post("/api/v1/train", json={"mode": "fast", "max_length": 64, "seed": 2})
    assert job.status_code == 202, job.text
    assert service.wait_job(job.json()["job_id"])["status"] == "succeeded"
    service.post("/api/v1/models/2/activate")  # whatever promotion decided
    open_page(browser, service, "models")
    card = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '.card[data-version="1"]'), what="v1"
    )
    card.find_element(By.XPATH, ".//button[text()='Make default']").click()
    assert "Make version 1 the default" in accept_confirm(browser)
    wait_for(lambda: service.get("/api/v1/models").json()["default_version"] == 1, what="v1")
    wait_for(
        lambda: (
            "default" in browser.find_element(By.CSS_SELECTOR, '.card[data-version="1"] h3').text
        ),
        what="the default badge",
    )
    card = browser.find_element(By.CSS_SELECTOR, '.card[data-version="1"]')
    assert "test macro-F1" in card.text and "auto-routed" in card.text
    card.find_element(By.XPATH, ".//button[text()='Pictures']").click()
    images = wait_for(
        lambda: len(found := card.find_elements(By.CSS_SELECTOR, ".figures img")) == 4 and found,
        what="four pictures",
    )
    for image in images:
        wait_for(lambda image=image: image.get_property("naturalWidth") > 100, what="an image")
    browser.execute_script("arguments[0].scrollIntoView()", card)
    screenshot(browser, tmp_path, "models")
    # The route behind the pictures.
    picture = service.get("/api/v1/models/1/figures/reliability_queue.png")
    assert picture.headers["content-type"] == "image/png" and picture.content[:4] == b"\x89PNG"
    missing = service.get("/api/v1/models/1/figures/confusion_language.png")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "figure_not_found"
    for name in ("metrics.json", "..%2Fv2%2Fconfusion_queue.png", "confusion_queue.png.bak"):
        assert service.get(f"/api/v1/models/1/figures/{name}").status_code in (404, 422), name
    assert service.get("/api/v1/models/9/figures/confusion_queue.png").status_code == 404


def test_monitoring_draws_quality_and_drift(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    open_page(browser, service, "monitoring")
    card = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '#monitoring .card[data-version="1"]'),
        what="the version 1 card",
    )
    assert "feedback agreement" in card.text and "Drift" in card.text
    assert "not enough data" in card.text  # a handful of answers: no drift score yet
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 2
    screenshot(browser, tmp_path, "monitoring")


def test_phone_width_and_keyboard(browser: WebDriver, service: Service, tmp_path: Path) -> None:
    browser.set_window_size(390, 844)
    try:
        for page in ("data", "train", "models", "try", "monitoring"):
            open_page(browser, service, page)
            time.sleep(0.5)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{page} is wider than a phone: {overflow} px"
        screenshot(browser, tmp_path, "phone-monitoring")
        # Keyboard only: the first Tab reaches the skip link, the next ones the pages.
        open_page(browser, service, "data")
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert browser.switch_to.active_element.text == "Skip to content"
        for _ in range(3):
            browser.switch_to.active_element.send_keys(Keys.TAB)
        assert browser.switch_to.active_element.text == "Models"
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for(lambda: browser.find_element(By.ID, "page-models").is_displayed(), what="models")
    finally:
        browser.set_window_size(1280, 800)
