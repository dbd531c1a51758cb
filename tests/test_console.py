"""The web console at `/`, driven in headless Chromium against the real service and TorchServe.

The browser is Debian's `chromium` with its `chromium-driver` (`.ci/run` installs both when they
are missing); Selenium talks to that driver, nothing is downloaded. Each test gets a browser of
its own (no key, no window size or page left over) and brings the service state it needs, so the
tests pass alone and in any order:

- `empty_service`: a fresh service with no data, for the key, the upload, and a training run
  started from the console (which uploads its tickets through the API first);
- `own_trained_service`: a copy of the session's trained data directory for the rollback,
  which adds a version and moves the default;
- `service`: the module's copy of that directory, for the tests that leave its data, versions
  and corrections as they found them (cancel, try, monitoring, phone). They add only logged
  answers, which none of them counts exactly, and the cancel test's job, the only one started.

Each test saves a screenshot in its temporary directory.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from api_service import Service, running, running_copy, tickets_csv
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from training.text.sample_data import generate_tickets

pytestmark = pytest.mark.slow  # the real service, TorchServe and a browser

API_KEY = "console-key-0123456789abcdef"
BROWSER = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
WAIT_S = 20.0
TRAIN_WAIT_S = 300.0
# What the train test uploads before it trains from the console.
TRAIN_ROWS, TRAIN_SEED = 150, 81
PROGRESS_LINE = re.compile(r"(embedding|fitting heads|fine-tuning): epoch \d+/(\d+), step \d+/\d+")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path) -> Iterator[Service]:
    """Version 1 trained on stored tickets; shared by the tests that leave it as they found it."""
    target = tmp_path_factory.mktemp("console") / "var"
    with running_copy(trained_data_dir, target, api_key=API_KEY) as s:
        yield s


@pytest.fixture
def own_trained_service(
    tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path
) -> Iterator[Service]:
    """Like `service`, for one test that changes the versions."""
    target = tmp_path_factory.mktemp("own") / "var"
    with running_copy(trained_data_dir, target, api_key=API_KEY) as s:
        yield s


@pytest.fixture
def empty_service(tmp_path: Path) -> Iterator[Service]:
    """No data, no version, no job."""
    with running(tmp_path / "var", api_key=API_KEY) as s:
        yield s


@pytest.fixture
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


def first_progress(service: Service) -> str:
    """The id of the job, once the API reports it running with progress."""
    return wait_for(
        lambda: (
            (j := service.get("/api/v1/train").json())["status"] == "running"
            and j["progress"]
            and j["job_id"]
        ),
        what="the job's first progress",
    )


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
    """Load the console afresh on `page`: a get of the URL already shown would only move to
    the fragment, and the page would keep what it showed."""
    browser.get("about:blank")
    browser.get(f"{service.base}/#{page}")
    wait_for(lambda: browser.find_element(By.ID, f"page-{page}").is_displayed(), what=page)


def sign_in(browser: WebDriver, service: Service) -> None:
    """Enter the key in the console's form; the tab keeps it for the service's origin. On the
    Try page, which sends no request when it opens (so no 401 races the key)."""
    open_page(browser, service, "try")
    field = browser.find_element(By.ID, "api-key")
    field.send_keys(API_KEY, Keys.ENTER)
    wait_for(
        lambda: field.get_attribute("placeholder") == "key set for this session", what="the key"
    )


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


def training_process(service: Service, job_id: str) -> psutil.Process:
    """The service's child that runs `python -m training.job` for `job_id`."""
    assert service.process is not None
    for child in psutil.Process(service.process.pid).children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:  # a child that ended meanwhile
            continue
        if "training.job" in command and any(job_id in part for part in command):
            return child
    raise AssertionError(f"no training process for job {job_id}")


def test_api_errors_are_shown_as_the_api_words_them(
    browser: WebDriver, empty_service: Service, tmp_path: Path
) -> None:
    service = empty_service
    page = service.get("/", headers={})  # the console itself needs no key
    assert page.status_code == 200 and "ticketserve console" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    open_page(browser, service, "data")
    refused = service.get("/api/v1/train-data", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    # No key entered yet (a browser of its own): the API's own 401 message.
    wait_for(lambda: error_box(browser).is_displayed(), what="the error box")
    assert error_box(browser).text == refused.json()["error"]["message"]
    screenshot(browser, tmp_path, "no-key")
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.ENTER)
    wait_for(lambda: not error_box(browser).is_displayed(), what="the error to go")
    wait_for(lambda: "tickets\n0" in text_of(browser, "stored"), what="the empty store")


def test_upload_by_drag_and_drop_shows_the_row_report(
    browser: WebDriver, empty_service: Service, tmp_path: Path
) -> None:
    service = empty_service
    content = tickets_csv(150, seed=81).decode() + ",,Billing and Payments,high,en\n"
    sign_in(browser, service)
    open_page(browser, service, "data")
    wait_for(lambda: "tickets\n0" in text_of(browser, "stored"), what="the empty store")
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
    # The stored summary reloads after the upload.
    wait_for(lambda: "tickets\n150" in text_of(browser, "stored"), what="the stored tickets")
    for label, count in stored["label_counts"]["queue"].items():
        assert f"{label} {count}" in text_of(browser, "stored")
    screenshot(browser, tmp_path, "data")


def test_train_from_the_console_and_watch_the_job_finish(
    browser: WebDriver, empty_service: Service, tmp_path: Path
) -> None:
    service = empty_service
    assert service.upload_csv(tickets_csv(TRAIN_ROWS, seed=TRAIN_SEED)).status_code == 201
    sign_in(browser, service)
    open_page(browser, service, "train")
    wait_for(lambda: "No training job yet." in text_of(browser, "job"), what="no job yet")
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
    job_id = first_progress(service)
    # A fast job can end between two of the page's polls: hold its training process while
    # it is running, so the page must show the live progress the API reports for it.
    trainer = training_process(service, job_id)
    trainer.suspend()
    try:

        def shows_the_progress() -> Any:
            job = service.get(f"/api/v1/train/{job_id}").json()
            step = job["progress"]
            if step is None:
                return None
            line = (
                f"{step['stage']}: epoch {step['epoch']}/{step['epochs']}, "
                f"step {step['step']}/{step['total_steps']}"
            )
            shown = text_of(browser, "job")  # status and progress come from one poll
            running = job["status"] == "running" and "status\nrunning" in shown
            return running and line in shown and PROGRESS_LINE.search(shown) and step

        step = wait_for(shows_the_progress, what="the live progress of the running job")
        bar = browser.find_element(By.CSS_SELECTOR, "#job progress")
        assert float(bar.get_attribute("value")) == step["step"]
        assert not browser.find_element(By.ID, "train-button").is_enabled()
        assert browser.find_element(By.ID, "cancel-job").is_displayed()
    finally:
        trainer.resume()
    done = wait_for(
        lambda: "succeeded" in (t := text_of(browser, "job")) and t,
        timeout=TRAIN_WAIT_S,
        what="the job to succeed",
    )
    assert f"Job {job_id}" in done
    assert "new version\n1" in done and "default\nyes" in done, done
    assert "fast" in done and "validation macro-F1" in done
    job = service.get("/api/v1/train").json()
    assert job["params"]["max_length"] == 64 and job["params"]["base_model"] == "all-MiniLM-L6-v2"
    screenshot(browser, tmp_path, "train")


def test_structured_fields_from_upload_to_try(
    browser: WebDriver, empty_service: Service, tmp_path: Path
) -> None:
    """The Data page keeps a feature column, the Train page trains with it, the Try page sends
    a ticket's fields: a customer tier that decides the priority reaches the model."""
    service = empty_service
    frame = generate_tickets(150, seed=82)
    frame["tier"] = frame["priority"].map({"high": "gold", "medium": "silver", "low": "bronze"})
    sign_in(browser, service)
    open_page(browser, service, "data")
    browser.find_element(By.ID, "upload-features").send_keys("tier")
    browser.execute_script(
        """const [text, zone] = arguments;
        const data = new DataTransfer();
        data.items.add(new File([text], "tickets.csv", {type: "text/csv"}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));""",
        frame.to_csv(index=False),
        browser.find_element(By.ID, "drop-zone"),
    )
    wait_for(lambda: "accepted\n150" in text_of(browser, "upload-report"), what="the upload")
    open_page(browser, service, "train")
    Select(browser.find_element(By.NAME, "mode")).select_by_value("fast")
    Select(browser.find_element(By.NAME, "base_model")).select_by_value("all-MiniLM-L6-v2")
    browser.find_element(By.NAME, "max_length").send_keys("64")
    browser.find_element(By.NAME, "feature_columns").send_keys("tier")
    browser.find_element(By.ID, "train-button").click()
    wait_for(lambda: "succeeded" in text_of(browser, "job"), TRAIN_WAIT_S, "the job")
    assert service.get("/api/v1/train").json()["params"]["feature_columns"] == ["tier"]
    service.wait_ready()
    open_page(browser, service, "try")
    browser.find_element(By.ID, "try-text").send_keys("The printer in room 4 jams")
    browser.find_element(By.ID, "try-fields").send_keys("tier=gold")
    browser.find_element(By.ID, "try-button").click()
    answer = wait_for(
        lambda: (found := browser.find_elements(By.CSS_SELECTOR, "#answers .answer")) and found,
        what="the answer",
    )[0]
    priority = answer.find_elements(By.CSS_SELECTOR, "tbody td")[1].text
    assert priority.startswith("high"), answer.text
    screenshot(browser, tmp_path, "fields")


def test_cancel_a_job_from_the_console(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    """A fine-tune of 20 epochs (minutes here): the page shows its live progress as the API
    reports it, and Cancel stops it long before it could end by itself."""
    sign_in(browser, service)
    open_page(browser, service, "train")
    # The service's last job trained version 1; no other test here starts one.
    wait_for(lambda: "succeeded" in text_of(browser, "job"), what="the last job")
    Select(browser.find_element(By.NAME, "mode")).select_by_value("full")
    Select(browser.find_element(By.NAME, "base_model")).select_by_value("all-MiniLM-L6-v2")
    for name, value in (("epochs", "20"), ("max_length", "64")):
        browser.find_element(By.CSS_SELECTOR, f'#train-form [name="{name}"]').send_keys(value)
    browser.find_element(By.ID, "train-button").click()
    job_id = first_progress(service)
    shown = wait_for(lambda: PROGRESS_LINE.search(text_of(browser, "job")), what="the progress")
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
    earlier = {f["feedback_id"] for f in service.get("/api/v1/feedback").json()["feedback"]}
    sign_in(browser, service)
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
        "/api/v1/classify", json={"tickets": [{"ticket_data": t} for t in tickets], "similar": 3}
    ).json()["predictions"]
    for shown, expected in zip(answers, api, strict=True):
        assert (
            expected["queue"]["label"] in shown.text and expected["priority"]["label"] in shown.text
        )
        # the three most similar stored tickets, by id and text
        rows = shown.find_elements(By.CSS_SELECTOR, ".similar tbody tr")
        assert [row.text for row in rows] and len(rows) == len(expected["similar"]) == 3
        for row, similar in zip(rows, expected["similar"], strict=True):
            assert similar["id"] in row.text and similar["text"][:40] in row.text
    select = Select(answers[0].find_element(By.CSS_SELECTOR, 'select[name="queue"]'))
    other = next(o.text for o in select.options if o.text != api[0]["queue"]["model_label"])
    select.select_by_visible_text(other)
    answers[0].find_element(By.CSS_SELECTOR, ".correction button").click()
    wait_for(lambda: "correction saved" in answers[0].text, what="the correction")
    stored = service.get("/api/v1/feedback").json()["feedback"]
    [saved] = [f for f in stored if f["feedback_id"] not in earlier]
    assert saved["labels"]["queue"] == other
    screenshot(browser, tmp_path, "try")
    # The shared service's corrections as they were (a later training would use this one).
    assert service.delete(f"/api/v1/feedback/{saved['feedback_id']}").status_code == 200


def test_roll_back_to_the_first_version(
    browser: WebDriver, own_trained_service: Service, tmp_path: Path
) -> None:
    service = own_trained_service
    job = service.post("/api/v1/train", json={"mode": "fast", "max_length": 64, "seed": 2})
    assert job.status_code == 202, job.text
    assert service.wait_job(job.json()["job_id"])["status"] == "succeeded"
    # Whatever promotion decided, version 2 is the default the admin rolls back from.
    assert service.post("/api/v1/models/2/activate").status_code == 200
    assert service.get("/api/v1/models").json()["default_version"] == 2
    sign_in(browser, service)
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
    service.wait_ready()
    tickets = ["My invoice is wrong", "VPN drops every hour", "Please reset my password"]
    body = {"tickets": [{"ticket_data": t} for t in tickets]}
    answered = service.post("/api/v1/classify", json=body)
    assert answered.status_code == 200, answered.text
    sign_in(browser, service)
    open_page(browser, service, "monitoring")
    card = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '#monitoring .card[data-version="1"]'),
        what="the version 1 card",
    )
    assert "feedback agreement" in card.text and "Drift" in card.text
    # A handful of answers, fewer than a drift score needs: none yet.
    window = re.search(r"(\d+) of \d+ newest answers", card.text)
    assert window and int(window.group(1)) >= len(tickets), card.text
    assert "not enough data" in card.text
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 2
    screenshot(browser, tmp_path, "monitoring")


# Where each page puts what it loads from the API (Try loads nothing).
LOADED = {
    "data": "#stored > *",
    "train": "#job > *",
    "models": "#models > *",
    "try": "#try-form",
    "monitoring": "#monitoring > *",
}


def test_phone_width_and_keyboard(browser: WebDriver, service: Service, tmp_path: Path) -> None:
    sign_in(browser, service)
    browser.set_window_size(390, 844)
    for page, loaded in LOADED.items():
        open_page(browser, service, page)
        wait_for(lambda loaded=loaded: browser.find_elements(By.CSS_SELECTOR, loaded), what=page)
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
