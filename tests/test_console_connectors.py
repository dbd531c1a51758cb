"""The console's Connectors page in headless Chromium, against the real service (with TorchServe
and a trained model) connected to the Zammad stand-in (tests/zammad_standin.py). The browser,
the sign-in and the waits are tests/test_console.py's.

After one signed webhook is delivered, the page shows the connector's mode, its outbox depth and
last delivery as `/api/v1/monitoring` has them, and no secret; an import started from the page
runs to its end there, and its count is what the training data gained.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import Service, running_copy
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_console import API_KEY, browser, open_page, screenshot, sign_in, wait_for
from zammad_standin import (
    PRIORITY_MAP,
    TOKEN,
    ZammadStandIn,
    closed_ticket,
    payload,
    service_env,
    trigger,
)

from training.text import sample_data

pytestmark = pytest.mark.slow  # the real service, TorchServe and a browser

__all__ = ["browser"]  # the fixture, shared with tests/test_console.py
SECRET = "webhook-secret-c0n5"
SINCE = "2024-03-01"
IMPORTED = 7


@pytest.fixture(scope="module")
def zammad() -> Iterator[ZammadStandIn]:
    standin = ZammadStandIn(groups=list(sample_data.QUEUES)).start()
    frame = sample_data.generate_tickets(IMPORTED, seed=41)
    standin.tickets = [
        closed_ticket(5001 + i, f"{row.subject} (case {5001 + i})", f"<p>{row.body}</p>",
                      row.queue, PRIORITY_MAP[row.priority])
        for i, row in enumerate(frame.itertuples())
    ]  # fmt: skip
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def desk_service(
    trained_data_dir: Path, zammad: ZammadStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("console-connectors")
    env = service_env(zammad, work, SECRET, ZAMMAD_MODE="suggest")
    with running_copy(trained_data_dir, work / "var", env=env, api_key=API_KEY) as service:
        yield service


def card_text(browser: WebDriver) -> str:
    return browser.find_element(By.CSS_SELECTOR, '#connectors .card[data-connector="zammad"]').text


def test_the_connectors_page_shows_the_outbox_and_runs_an_import(
    browser: WebDriver, desk_service: Service, zammad: ZammadStandIn, tmp_path: Path
) -> None:
    service = desk_service
    delivered = trigger(
        service.base, payload(701, "Invoice twice", "<p>Charged twice.</p>"), SECRET
    )
    assert delivered.status_code == 202, delivered.text
    wait_for(lambda: any(ticket == "701" for ticket, _ in zammad.updates), what="the write-back")
    stats = service.get("/api/v1/monitoring").json()["connectors"]["zammad"]
    assert stats["last_delivery"] and stats["mode"] == "suggest" and stats["problem"] is None

    sign_in(browser, service)
    open_page(browser, service, "connectors")
    # The card comes with the monitoring report, its import state with a second request.
    shown = wait_for(
        lambda: "No import yet." in (text := card_text(browser)) and text,
        what="the zammad card and its import state",
    )
    assert "mode\nsuggest" in shown and "start-up check\nok" in shown, shown
    assert f"outbox depth\n{stats['pending']} pending" in shown, shown
    assert f"written back\n{stats['done']}" in shown, shown
    assert "last delivery\n\u2013" not in shown  # a time, in the browser's own format
    for secret in (SECRET, TOKEN, API_KEY):
        assert secret not in browser.page_source
    screenshot(browser, tmp_path, "connectors")

    before = service.get("/api/v1/train-data").json()["rows"]
    form = browser.find_element(By.CSS_SELECTOR, 'form[data-connector="zammad"]')
    since = form.find_element(By.NAME, "since")
    browser.execute_script("arguments[0].value = arguments[1]", since, SINCE)  # a date picker
    form.find_element(By.TAG_NAME, "button").click()
    done = wait_for(
        lambda: "import\ndone" in (text := card_text(browser)) and text, what="the import done"
    )
    assert f"imported\n{IMPORTED}" in done and f"closed since\n{SINCE}" in done, done
    state = service.get("/api/v1/connectors/zammad/import").json()
    assert state["status"] == "done" and state["imported"] == IMPORTED
    assert service.get("/api/v1/train-data").json()["rows"] == before + IMPORTED
    screenshot(browser, tmp_path, "connectors-import")

    # On a phone the page stays within the screen.
    browser.set_window_size(390, 844)
    open_page(browser, service, "connectors")
    wait_for(lambda: "import\ndone" in card_text(browser), what="the card on a phone")
    overflow = browser.execute_script("return document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the connectors page is wider than a phone: {overflow} px"
