"""Mail through the real service and TorchServe: HTML and RFC 822 tickets are classified as the
model's own cleaning reads them, mail uploads (one .eml, an mbox) become training rows, and no
raw personal data reaches the data directory or the logs with masking on (the default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import Service, running_copy

from training.export.predict import Predictor

pytestmark = pytest.mark.slow  # the real service and TorchServe

# Personal data the tests send; none of it may be found on disk afterwards.
EMAIL, PHONE, IBAN = "jonas.becker@contoso-example.de", "+49 30 9876 5432", "DE89370400440532013000"
IBAN_SPACED = "DE89 3704 0044 0532 0130 00"
NAME = "Jonas"
RAW = [EMAIL, "9876 5432", IBAN, IBAN_SPACED]

HTML_BODY = (
    "<html><head><style>p {color: red}</style></head><body>"
    f"<p>Hallo {NAME},</p><p>die Rechnung wurde doppelt abgebucht, IBAN {IBAN_SPACED}.</p>"
    f"<p>Mit freundlichen Grüßen<br>Jonas Becker<br>Tel. {PHONE}<br>{EMAIL}</p>"
    '<blockquote class="gmail_quote">Am Mo. schrieb Support: Ist das VPN wieder da?</blockquote>'
    "</body></html>"
)
MAIL = (
    f"From: Jonas Becker <{EMAIL}>\r\nTo: help@example.com\r\nSubject: Drucker kaputt\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    f"Hi {NAME},\r\n\r\nder Drucker im 3. Stock druckt nicht mehr. Ruf mich an: {PHONE}\r\n\r\n"
    f"Viele Grüße\r\nJonas\r\n\r\nOn Mon, Nov 3, 2025 at 10:12 AM Support <s@example.com> wrote:"
    "\r\n> Please send your invoice number.\r\n"
)


@pytest.fixture(scope="module")
def service(trained_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_copy(trained_data_dir, tmp_path_factory.mktemp("mail") / "var") as service:
        yield service


def test_html_and_mail_answer_as_the_in_process_model_reads_them(service: Service) -> None:
    """TorchServe's answers on dirty mail are the in-process predictor's on the same mail (the
    model directory's own cleaning both times)."""
    tickets = [
        {"body": HTML_BODY, "content_type": "text/html"},
        {"ticket_data": MAIL, "content_type": "message/rfc822"},
    ]
    answer = service.post("/api/v1/classify", json={"tickets": tickets})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    predictor = Predictor.load(service.data_dir / "models" / "v1", device="cpu")
    cleaned = [
        predictor.cleaning.ticket(None, HTML_BODY, "text/html"),
        predictor.cleaning.ticket(None, MAIL, "message/rfc822"),
    ]
    assert cleaned[0] == "Hallo [NAME],\n\ndie Rechnung wurde doppelt abgebucht, IBAN [IBAN]."
    assert cleaned[1].startswith("Drucker kaputt\nHi [NAME],")
    assert "[PHONE]" in cleaned[1] and "invoice number" not in cleaned[1]
    for got, want in zip(predictions, predictor.predict(cleaned), strict=True):
        for head in ("queue", "priority"):
            assert got[head]["model_label"] == want[head]["label"]
            assert got[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=1e-4)


def test_a_mail_with_nothing_of_its_own_is_a_clear_422(service: Service) -> None:
    only_quote = "On Mon, Nov 3, 2025 Support <s@example.com> wrote:\n> Is the VPN back?\n"
    answer = service.post("/api/v1/classify", json={"body": only_quote})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "empty_text" and "nothing is left after cleaning" in error["message"]
    wrong = service.post("/api/v1/classify", json={"ticket_data": "x", "content_type": "text/rtf"})
    assert wrong.status_code == 422, wrong.text


def test_mail_uploads_become_rows_with_the_labels_given(service: Service) -> None:
    mbox = (f"From jonas@example Mon Nov  3 10:12:00 2025\n{MAIL}\n"
            "From anna@example Tue Nov  4 09:00:00 2025\nSubject: Toner leer\n\n"
            "Der Toner im Drucker ist leer.\n").encode()  # fmt: skip
    params = {"label": ["queue:Hardware", "priority:medium"]}
    upload = service.post(
        "/api/v1/train-data",
        data=mbox,
        headers={"Content-Type": "application/mbox"},
        params=params,
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["rows_accepted"] == 2
    assert upload.json()["label_counts"]["queue"] == {"Hardware": 2}
    eml = service.post(
        "/api/v1/train-data",
        data=MAIL.encode(),
        headers={"Content-Type": "message/rfc822"},
    )
    assert eml.status_code == 422 and "label=queue:Billing" in eml.json()["error"]["message"]
    bad = service.post(
        "/api/v1/train-data",
        data=MAIL.encode(),
        headers={"Content-Type": "message/rfc822"},
        params={"label": "queue"},
    )
    assert bad.status_code == 422 and "head:label" in bad.json()["error"]["message"]


def test_csv_rows_may_be_html_and_are_stored_cleaned(service: Service) -> None:
    html = HTML_BODY.replace('"', '""')
    csv = ("subject,body,content_type,queue,priority\n"
           f'Rechnung,"{html}",text/html,Billing,high\n'
           f'Passwort,"Hi {NAME}, bitte Passwort zurücksetzen. {EMAIL}",,IT,low\n'
           "VPN,<p>down</p>,text/rtf,IT,low\n")  # fmt: skip
    upload = service.upload_csv(csv.encode())
    assert upload.status_code == 201, upload.text
    report = upload.json()
    assert report["rows_accepted"] == 2
    assert "'content_type'" in report["rejected"][0]["reason"]


def test_feedback_text_is_stored_masked(service: Service) -> None:
    answer = service.post("/api/v1/feedback", json={
        "ticket_data": f"Hi {NAME}, refund please to IBAN {IBAN}, call {PHONE}",
        "queue": "Billing and Payments", "priority": "high",
    })  # fmt: skip
    assert answer.status_code in (200, 201), answer.text  # 200: it replaced an equal one
    assert answer.json()["text"] == "Hi [NAME], refund please to IBAN [IBAN], call [PHONE]"


def test_no_raw_personal_data_reaches_the_disk(service: Service) -> None:
    """Personal data sent in a classified mail, an upload and a correction is in no file the
    service wrote: its data directory (store, datasets, models) and its log."""
    tickets = [{"body": HTML_BODY, "content_type": "text/html"},
               {"ticket_data": MAIL, "content_type": "message/rfc822"}]  # fmt: skip
    assert service.post("/api/v1/classify", json={"tickets": tickets}).status_code == 200
    csv = (f'text,queue,priority\n"Hi {NAME}, IBAN {IBAN}, {EMAIL}, {PHONE}",Billing,high\n'
           "VPN drops every hour,IT,low\n")  # fmt: skip
    assert service.upload_csv(csv.encode()).status_code in (200, 201)
    feedback = {"ticket_data": f"Refund to {IBAN}, {EMAIL}", "queue": "Billing and Payments",
                "priority": "low"}  # fmt: skip
    assert service.post("/api/v1/feedback", json=feedback).status_code in (200, 201)
    files = [p for p in service.data_dir.rglob("*") if p.is_file()] + [service.log_path]
    for path in files:
        content = path.read_bytes()
        for value in RAW:
            assert value.encode() not in content, f"{value!r} in {path}"
