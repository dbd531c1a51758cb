"""Suspected label errors through the real service: GET /api/v1/models/{version}/label-issues
(paging, bounds, unknown heads), a relabel through the feedback route the console uses, the
next training leaving the relabelled row out, and the console's Relabel button in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import Service, running_copy
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from test_console import API_KEY, browser, open_page, sign_in, wait_for  # noqa: F401

from training.text.sample_data import generate_tickets

pytestmark = pytest.mark.slow  # the real service, TorchServe, training and a browser

FLIPPED = 12  # queue labels moved to another queue in the second upload


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path) -> Iterator[Service]:
    """Version 2: the stored tickets and more, some of whose queues were flipped."""
    target = tmp_path_factory.mktemp("issues") / "var"
    with running_copy(trained_data_dir, target, api_key=API_KEY) as s:
        frame = generate_tickets(150, seed=23)
        queues = sorted(frame["queue"].unique())
        for i in range(FLIPPED):
            row = i * 11
            frame.loc[row, "queue"] = next(q for q in queues if q != frame.loc[row, "queue"])
        assert s.upload_csv(frame.to_csv(index=False).encode()).status_code == 201
        job = s.post("/api/v1/train", json={"mode": "fast", "max_length": 64, "seed": 3})
        assert job.status_code == 202, job.text
        assert s.wait_job(job.json()["job_id"])["model_version"] == 2
        yield s


def test_label_issues_are_paged_bounded_and_relabelled(service: Service) -> None:
    first = service.get("/api/v1/models/2/label-issues", params={"head": "queue", "limit": 200})
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["available"] and page["rows_scored"] >= 250
    assert page["flagged"] >= 1 and sum(page["per_class"].values()) == page["flagged"]
    issues = page["issues"]
    assert [i["score"] for i in issues] == sorted(i["score"] for i in issues)
    assert all(i["given"] != i["suggested"] and i["row_id"] for i in issues)
    # Paging: an offset continues where a smaller page stopped.
    two = service.get("/api/v1/models/2/label-issues?head=queue&limit=1&offset=0").json()
    assert two["issues"] == issues[:1] and two["limit"] == 1
    past = service.get("/api/v1/models/2/label-issues?head=queue&offset=100000").json()
    assert past["issues"] == []
    # Bounds and unknown things.
    for query, status in (
        ("head=queue&limit=201", 422),
        ("head=queue&limit=0", 422),
        ("head=queue&offset=-1", 422),
        ("head=no%20such", 422),
        ("head=language", 404),
    ):
        answer = service.get(f"/api/v1/models/2/label-issues?{query}")
        assert answer.status_code == status, (query, answer.text)
    assert service.get("/api/v1/models/9/label-issues").status_code == 404

    # Relabel the most suspect row as the console does; it becomes a correction of that row.
    issue = issues[0]
    body = {"row_id": issue["row_id"], "queue": issue["suggested"]}
    saved = service.post("/api/v1/feedback", json=body)
    assert saved.status_code == 201, saved.text
    record = saved.json()
    assert record["row_id"] == issue["row_id"] and record["labels"]["queue"] == issue["suggested"]
    assert record["predicted"]["queue"] == issue["given"]  # the row's label before
    again = service.post("/api/v1/feedback", json=body)
    assert again.status_code == 200 and again.json()["replaced"]
    listed = service.get("/api/v1/feedback").json()["feedback"]
    assert [f["row_id"] for f in listed].count(issue["row_id"]) == 1
    for bad, status in (
        ({"row_id": "nope", "queue": "x"}, 422),
        ({"row_id": "0123abc:999999", "queue": issue["suggested"]}, 404),
        ({"row_id": issue["row_id"], "ticket_data": "text", "queue": issue["suggested"]}, 422),
    ):
        assert service.post("/api/v1/feedback", json=bad).status_code == status, bad
    assert service.delete(f"/api/v1/feedback/{record['feedback_id']}").status_code == 200


def test_relabel_from_the_console(browser: WebDriver, service: Service, tmp_path: Path) -> None:  # noqa: F811
    issues = service.get("/api/v1/models/2/label-issues?head=queue").json()["issues"]
    sign_in(browser, service)
    open_page(browser, service, "models")
    card = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '.card[data-version="2"]'), what="v2"
    )
    card.find_element(By.XPATH, ".//button[text()='Label issues']").click()
    form = wait_for(
        lambda: card.find_element(
            By.CSS_SELECTOR, f'form.relabel[data-row="{issues[0]["row_id"]}"]'
        ),
        what="the first issue's relabel form",
    )
    assert (
        Select(form.find_element(By.TAG_NAME, "select")).first_selected_option.text
        == (issues[0]["suggested"])
    )
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "correction saved" in form.text, what="the correction")
    stored = service.get("/api/v1/feedback").json()["feedback"]
    [saved] = [f for f in stored if f["row_id"] == issues[0]["row_id"]]
    assert saved["labels"]["queue"] == issues[0]["suggested"]
    browser.save_screenshot(str(tmp_path / "label-issues.png"))
    assert service.delete(f"/api/v1/feedback/{saved['feedback_id']}").status_code == 200


def test_the_next_training_learns_the_relabelled_row(service: Service) -> None:
    issue = service.get("/api/v1/models/2/label-issues?head=queue").json()["issues"][0]
    body = {"row_id": issue["row_id"], "queue": issue["suggested"]}
    saved = service.post("/api/v1/feedback", json=body).json()
    job = service.post("/api/v1/train", json={"mode": "fast", "max_length": 64, "seed": 3})
    assert job.status_code == 202, job.text
    done = service.wait_job(job.json()["job_id"])
    assert done["status"] == "succeeded" and done["feedback_rows"] >= 1
    # The stored row's old label is left out: the row counts once, with its new label.
    version = done["model_version"]
    issues = service.get(f"/api/v1/models/{version}/label-issues?head=queue&limit=200").json()
    assert all(i["row_id"] != issue["row_id"] for i in issues["issues"])
    assert service.delete(f"/api/v1/feedback/{saved['feedback_id']}").status_code == 200
