"""training.text.cleaning on hand-written mails (English and German), HTML edge cases, personal data
of each kind, and properties over any text: it never raises and cleaning twice changes nothing;
and a model directory's copy of it, loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.inference.model_cleaning import (
    CLEANING_FILE,
    CLEANING_MODULE_FILE,
    ModelCleaning,
    write_cleaning,
)
from training.text.cleaning import (
    CONTENT_TYPES,
    CleaningSettings,
    Mail,
    clean_text,
    clean_ticket,
    html_to_text,
    mask,
    newest_message,
    read_mail,
    read_mbox,
)

GMAIL_DE = """<html><head><style>p {color: red}</style><title>Re: Drucker</title></head><body>
<div dir="ltr"><p>Hallo Anna,</p><p>der Drucker im 3. Stock druckt seit dem Update nicht mehr.<br>
Die Fehlermeldung lautet &quot;Papierstau&quot;.</p><ul><li>Modell: HP LaserJet 400</li>
<li>Raum 3.12</li></ul><p>Mit freundlichen Grüßen<br>Jonas Becker<br>Tel. +49 30 1234567</p></div>
<div class="gmail_quote"><div class="gmail_attr">Am Mo., 3. Nov. 2025 um 10:12 Uhr schrieb Support
&lt;support@example.de&gt;:<br></div><blockquote class="gmail_quote">Bitte beschreiben Sie Ihre
Rechnungsfrage genauer.</blockquote></div>
<div style="display: none; max-height: 0">Vorschautext für die Inbox</div>
<img src="https://track.example.com/open.gif" width="1" height="1"></body></html>"""

OUTLOOK_EN = """Hi team,

I was charged twice for invoice 4471 this month. Please refund one of the payments.

Kind regards,
Sarah Johnson
Accounts Payable | Contoso Ltd.
+44 20 7946 0958

CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential and intended solely for
the addressee. If you have received it in error, please notify the sender and delete it.

-----Original Message-----
From: Support <support@example.com>
Sent: Monday, November 3, 2025 10:12 AM
To: Sarah Johnson <sarah.johnson@contoso.com>
Subject: RE: VPN access

Your VPN account has been unlocked.
"""

REPLY_EN = """The laptop screen flickers when I connect the docking station.

--
Tom Baker
Sent from my iPhone

On Mon, Nov 3, 2025 at 10:12 AM Support <support@example.com> wrote:
> Did the password reset work?
>
> > Earlier: please reset my password
"""

FORWARD_DE = """Bitte kümmert euch darum, die Rücksendung ist dringend.

Viele Grüße
Petra

---------- Weitergeleitete Nachricht ---------
Von: Kunde <kunde@example.de>
Datum: Mo., 3. Nov. 2025 um 09:00 Uhr
Betreff: Rücksendung Bestellung 898936
An: <shop@example.de>

Ich möchte Bestellung 898936 zurücksenden.
"""


def test_html_mail_keeps_the_new_message_and_its_structure() -> None:
    text = clean_text(GMAIL_DE, "text/html; charset=utf-8")
    assert text.startswith("Hallo [NAME],")
    assert "druckt seit dem Update nicht mehr" in text and '"Papierstau"' in text
    assert "* Modell: HP LaserJet 400" in text  # the list stays a list
    for gone in ("Rechnungsfrage", "schrieb", "Vorschautext", "color", "Re: Drucker", "Jonas",
                 "Grüßen", "1234567", "track.example"):  # fmt: skip
        assert gone not in text, (gone, text)


@pytest.mark.parametrize(
    ("mail", "kept", "gone"),
    [
        (OUTLOOK_EN, "charged twice for invoice 4471",
         ["Kind regards", "Sarah", "Contoso", "CONFIDENTIALITY", "VPN", "Original", "7946"]),
        (REPLY_EN, "screen flickers when I connect the docking station",
         ["Tom", "iPhone", "password", "wrote"]),
        (FORWARD_DE, "die Rücksendung ist dringend",
         ["Petra", "Viele Grüße", "Weitergeleitete", "Bestellung 898936 zurücksenden"]),
    ],
    ids=["outlook-en", "reply-en", "forward-de"],
)  # fmt: skip
def test_plain_mail_keeps_only_the_newest_message(mail: str, kept: str, gone: list[str]) -> None:
    text = clean_text(mail)
    assert kept in text
    for part in gone:
        assert part not in text, (part, text)


def test_a_plain_ticket_is_untouched() -> None:
    ticket = "VPN drops every hour since the update.\n\nClient 4.2, Windows 11."
    assert clean_text(ticket) == ticket


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("", ""),
        ("<p>unclosed <b>bold <i>and italic", "unclosed bold and italic"),
        ("<blockquote><blockquote>only quotes</blockquote></blockquote>", ""),
        ("<script>alert(1)</script><p>a &amp; b &uuml;ber</p>", "a & b über"),
        ("<p hidden>hidden</p><p>seen</p>", "seen"),
        ("just text, no tags", "just text, no tags"),
        ("<?xml version='1.0'?><p>x</p>", "x"),
    ],
)
def test_html_edge_cases(markup: str, expected: str) -> None:
    assert html_to_text(markup) == expected


def test_a_megabyte_of_html_is_cleaned() -> None:
    body = "<div>" + "<p>Der Drucker druckt nicht. &amp; mehr</p>" * 25_000 + "</div>"
    assert len(body) > 1_000_000
    text = clean_text(body, "text/html")
    assert text.count("Der Drucker druckt nicht. & mehr") == 25_000


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("write to john.doe+it@example.co.uk now", "write to [EMAIL] now"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please"),
        ("IBAN GB82WEST12345698765432.", "IBAN [IBAN]."),
        ("card 4111 1111 1111 1111 expired", "card [CARD] expired"),
        ("card 5500-0000-0000-0004", "card [CARD]"),
        ("server 10.0.12.7 and fe80::1ff:fe23:4567:890a", "server [IP] and [IP]"),
        ("call +49 30 1234567 or 0171 2345678", "call [PHONE] or [PHONE]"),
        ("ring +1 212 555 0143", "ring [PHONE]"),
        ("https://bob:s3cret@vpn.acme.com/login fails", "[URL] fails"),
        ("Dear Mr. Miller,", "Dear Mr. [NAME],"),
        ("Hi Anna!", "Hi [NAME]!"),
        ("Sehr geehrte Frau Dr. Weiß,", "Sehr geehrte Frau Dr. [NAME],"),
        ("Liebe Petra Meier,", "Liebe [NAME],"),
    ],
)
def test_each_kind_of_personal_data_is_masked(raw: str, masked: str) -> None:
    assert mask(raw) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Invoice RE-2291 of 03.11.2025 for 1299.00 EUR, order 898936, ticket #123456789.",
        "The printer HP 400 in room 3.12 shows error 0x80070005 since 2025-11-03.",
        "Hi team, the VPN is down again.",  # "team" is no name
        "DE12 is our site code; card 1234 5678 9012 3456 is not a valid one.",
    ],
)
def test_what_is_no_personal_data_stays(text: str) -> None:
    assert mask(text) == text


MAIL_LINES = ["Hi Anna,", "> quoted", "On Mon, Nov 3, 2025 Bob <b@x.io> wrote:", "--",
              "Kind regards,", "Tom", "4111 1111 1111 1111", "+49 30 1234567", "<p>para</p>",
              "<blockquote>q</blockquote>", "-----Original Message-----", "From: a@b.de",
              "Printer broken", ""]  # fmt: skip
MAIL_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=400) | st.lists(
    st.sampled_from(MAIL_LINES), max_size=12
).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=MAIL_TEXT, html=st.booleans())
def test_cleaning_never_raises_and_is_idempotent(text: str, html: bool) -> None:
    content_type = "text/html" if html else "text/plain"
    once = clean_text(text, content_type)
    assert isinstance(once, str)
    assert clean_text(once) == once
    assert newest_message(once) == once or not once.strip()


def test_a_ticket_is_cleaned_as_one_text_whatever_its_body_type() -> None:
    html = "<p>Hello support,</p><p>VPN drops, IP 10.1.2.3.</p><blockquote>old</blockquote>"
    assert clean_ticket("VPN", html, "text/html") == "VPN\nHello support,\n\nVPN drops, IP [IP]."
    mail = "Subject: VPN\r\nContent-Type: text/html\r\n\r\n" + html
    assert clean_ticket(None, mail, "message/rfc822") == clean_ticket("VPN", html, "text/html")
    assert clean_ticket("Other", mail, "message/rfc822").startswith("Other\n")
    assert clean_text(html, "text/html") == clean_ticket(None, html, "text/html")


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("> only an old quote\n> more", ""),
        (
            "Printer broken\n> quoted\nanswer between quotes\n> more",
            "Printer broken\nanswer between quotes",
        ),
        ("Hi Jonas, the printer jams", "Hi [NAME], the printer jams"),
        ("Hello all, the printer jams", "Hello all, the printer jams"),
        ("Hallo zusammen,\nDrucker kaputt", "Hallo zusammen,\nDrucker kaputt"),
        ("a -> b when x > 3", "a -> b when x > 3"),
        ("- printer broken\n- VPN down", "- printer broken\n- VPN down"),
        ("VPN broken\n\nThanks and regards,\nBram Jansen\nContoso Ltd", "VPN broken"),
        ("Drucker kaputt\n\nMfG\nJörg Krüger\nTel.: +49 30 1234567", "Drucker kaputt"),
        ("Impressora avariada\n\nObrigado\nJoão", "Impressora avariada"),
        ("Printer jams\n\nVon meinem iPhone gesendet", "Printer jams"),
        (
            "Printer jams.\n\nThis e-mail is confidential and intended solely for the addressee.",
            "Printer jams.",
        ),
        (
            "Regards the printer on floor 3: it is broken",
            "Regards the printer on floor 3: it is broken",
        ),
        ("Hi Łukasz, the VPN drops", "Hi [NAME], the VPN drops"),
        ("Hi Sanne and team,\nVPN", "Hi [NAME] and team,\nVPN"),
        ("Sehr geehrter Kundenservice,\nDrucker", "Sehr geehrter Kundenservice,\nDrucker"),
        ("Problem:\n-printer broken\n\n-- \nTom", "Problem:\n-printer broken"),
    ],
)
def test_quoted_lines_and_greetings(raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned


def test_settings_switch_cleaning_off_and_add_patterns() -> None:
    text = "Hi Anna,\ncustomer KD-123456 cannot log in\n\nBest regards\nAnna\n+49 30 1234567"
    plain = CleaningSettings(clean_mail=False, mask_personal_data=False)
    assert clean_text(text, settings=plain) == text
    extra = CleaningSettings(mask_patterns={"CUSTOMER": r"KD-\d{6}"})
    assert clean_text(text, settings=extra) == "Hi [NAME],\ncustomer [CUSTOMER] cannot log in"
    assert CleaningSettings.from_dict(extra.to_dict()) == extra
    for bad in ({"customer": "x"}, {"X": "("}, {"X": "a*"}, {"X": "y" * 201}):
        with pytest.raises(ValueError, match="mask_patterns"):
            CleaningSettings(mask_patterns=bad)


def test_mail_and_mbox_are_read_by_their_best_part() -> None:
    mail = (
        "From: a@example.com\r\nSubject: =?utf-8?q?Drucker_kaputt?=\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
        "quoted-printable\r\n\r\nDer Drucker druckt nicht, Gr=FC=DFe\r\n--b\r\n"
        "Content-Type: text/html\r\n\r\n<p>Der Drucker</p>\r\n--b--\r\n"
    )
    assert read_mail(mail.encode()) == Mail(
        "Drucker kaputt", "Der Drucker druckt nicht, Grüße", "text/plain"
    )
    assert read_mail("no headers at all") == Mail("", "no headers at all", "text/plain")
    mbox = f"From x Mon\n{mail}\nFrom y Tue\nSubject: Zwei\n\n>From here on\n".encode()
    assert [m.subject for m in read_mbox(mbox)] == ["Drucker kaputt", "Zwei"]
    assert read_mbox(mbox)[1].body == "From here on\n"


def test_the_handler_knows_the_cleaner_s_body_types() -> None:
    from handlers.ticket_requests import BODY_TYPES

    assert BODY_TYPES == CONTENT_TYPES


def test_hidden_preheaders_are_dropped() -> None:
    markup = (
        '<div style="font-size:0px;max-height:0px;opacity:0;overflow:hidden">Preview</div>'
        '<span class="preheader">More preview</span><p style="opacity:0.5">Visible</p>'
    )
    assert html_to_text(markup) == "Visible"


def test_a_model_s_cleaning_loads_without_writing_into_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cleaning(tmp_path, CleaningSettings())
    copy = tmp_path / CLEANING_MODULE_FILE  # a module of its own, not loaded by another test
    copy.write_text(copy.read_text(encoding="utf-8") + f"\n# {tmp_path}\n", encoding="utf-8")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as Python's default is
    cleaning = ModelCleaning.load(tmp_path)
    assert cleaning.ticket(None, "<p>Drucker <b>kaputt</b></p>", "text/html") == "Drucker kaputt"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CLEANING_MODULE_FILE, CLEANING_FILE]
    )
