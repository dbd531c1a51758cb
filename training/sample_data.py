"""Synthetic labelled help-desk tickets (English and German) for demos, tests and smoke runs.

`generate_tickets` builds each ticket from hand-written template tables: the queue picks the
topic sentences, the priority picks an urgency cue that is independent of the queue, and
greetings, closings, details and slot fillers (apps, devices, invoice numbers, names, dates)
vary the wording. About one ticket in ten is ambiguous on purpose (two topics, or only a mild
urgency cue), so a model can learn the labels without the data being perfectly separable.
All randomness comes from one `random.Random(seed)`, so (rows, seed) fixes the output.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from training.files import write_atomic

COLUMNS = ("subject", "body", "queue", "priority", "language")
LANGUAGES = ("en", "de")
PRIORITIES = ("high", "medium", "low")
PRIORITY_WEIGHTS = (0.30, 0.45, 0.25)
# Deliberately uneven (largest about 1.6x smallest), like a real help desk.
QUEUE_WEIGHTS: dict[str, float] = {
    "Technical Support": 1.45,
    "Billing and Payments": 1.2,
    "Account Access": 1.2,
    "Hardware": 1.0,
    "Returns and Exchanges": 0.9,
    "Sales and Pre-Sales": 1.0,
    "Human Resources": 0.9,
}
QUEUES = tuple(QUEUE_WEIGHTS)

EMPTY_SUBJECT_RATE = 0.05
MIXED_TOPIC_RATE = 0.08  # second topic from another queue; label stays the main topic
MILD_CUE_RATE = 0.02  # only a vague urgency sentence; label stays the chosen priority
NO_CUE_MEDIUM_RATE = 0.25  # an ordinary problem often says nothing about urgency
SUBJECT_MARK_RATE = {"high": 0.35, "medium": 0.0, "low": 0.25}
CUE_FIRST_RATE = {"high": 0.35, "medium": 0.0, "low": 0.1}  # "Urgent!" tends to come first


class Templates(NamedTuple):
    """Text for one queue in one language; openings state the problem, details add context."""

    subjects: tuple[str, ...]
    openings: tuple[str, ...]
    details: tuple[str, ...]


TEMPLATES: dict[str, dict[str, Templates]] = {
    "Technical Support": {
        "en": Templates(
            subjects=(
                "{app} keeps crashing",
                "Error {error} when starting {app}",
                "VPN connection drops constantly",
                "Cannot connect to VPN from home office",
                "{app} freezes after the latest update",
                "Report export in {app} fails",
                "Software installation fails with {error}",
                "Sync error in {app}",
                "Bug in {app}: saved entries disappear",
                "Internal web app error {error}",
            ),
            openings=(
                "{app} crashes every time I try to open a shared file.",
                "Since this morning {app} shows the error {error} on startup.",
                "The VPN client disconnects every few minutes and I lose my session.",
                "I cannot connect to the VPN, the client says the gateway is not reachable.",
                "After the last update {app} freezes as soon as I open the settings.",
                "The report export in {app} fails with error {error}.",
                "Installing the new version of {app} aborts with error code {error}.",
                "{app} does not sync anymore and keeps showing a sync conflict.",
                "There seems to be a bug in {app}: saved entries disappear after a restart.",
                "Our internal web app returns an {error} error when saving a form.",
            ),
            details=(
                "I already reinstalled the software and restarted the computer.",
                "The error log mentions a missing DLL.",
                "Colleagues on the same version of {app} see the same crash.",
                "I attached a screenshot of the error message.",
                "Clearing the cache did not help.",
                "It started after the update on {date}.",
            ),
        ),
        "de": Templates(
            subjects=(
                "{app} stürzt ständig ab",
                "Fehler {error} beim Start von {app}",
                "VPN-Verbindung bricht ständig ab",
                "Keine VPN-Verbindung im Homeoffice",
                "{app} hängt nach dem Update",
                "Export in {app} funktioniert nicht",
                "Softwareinstallation schlägt mit {error} fehl",
                "Synchronisationsfehler in {app}",
                "Bug in {app}: Einträge verschwinden",
                "Webanwendung meldet Fehler {error}",
            ),
            openings=(
                "{app} stürzt jedes Mal ab, wenn ich eine freigegebene Datei öffne.",
                "Seit heute Morgen zeigt {app} beim Start den Fehler {error}.",
                "Der VPN-Client trennt alle paar Minuten die Verbindung.",
                "Ich komme nicht ins VPN, der Client meldet, das Gateway sei nicht erreichbar.",
                "Nach dem letzten Update friert {app} ein, sobald ich die Einstellungen öffne.",
                "Der Berichtsexport in {app} bricht mit Fehler {error} ab.",
                "Die Installation der neuen Version von {app} bricht mit Fehlercode {error} ab.",
                "{app} synchronisiert nicht mehr und meldet ständig einen Konflikt.",
                "In {app} gibt es anscheinend einen Bug: Einträge verschwinden nach dem Neustart.",
                "Unsere interne Webanwendung liefert beim Speichern den Fehler {error}.",
            ),
            details=(
                "Ich habe die Software bereits neu installiert und den Rechner neu gestartet.",
                "Im Fehlerprotokoll steht etwas von einer fehlenden DLL.",
                "Kollegen mit derselben Version von {app} haben den gleichen Absturz.",
                "Ein Screenshot der Fehlermeldung ist im Anhang.",
                "Cache leeren hat nicht geholfen.",
                "Das Problem besteht seit dem Update am {date}.",
            ),
        ),
    },
    "Billing and Payments": {
        "en": Templates(
            subjects=(
                "Invoice {invoice} charged twice",
                "Question about invoice {invoice}",
                "Refund not received yet",
                "Incorrect charge on our credit card",
                "Please update our billing address",
                "Payment failed for invoice {invoice}",
                "VAT ID missing on invoice {invoice}",
                "Request for a credit note",
                "Direct debit charged twice in {month}",
                "Payment reminder despite paid invoice",
            ),
            openings=(
                "We were charged twice for invoice {invoice}.",
                "The amount of {amount} on invoice {invoice} seems to be wrong.",
                "I requested a refund of {amount} on {date} but have not received it yet.",
                "Our credit card was charged {amount} without any invoice.",
                "Please send us a corrected invoice with our new billing address.",
                "The payment for invoice {invoice} failed although the card is valid.",
                "The VAT ID is missing on invoice {invoice}, so our accountant cannot book it.",
                "Could you issue a credit note for the overcharge of {amount}?",
                "The direct debit for {month} was taken from our bank account twice.",
                "We paid invoice {invoice} by bank transfer but still got a payment reminder.",
            ),
            details=(
                "Our customer number is {custno}.",
                "I attached the bank statement showing both payments.",
                "The invoice was addressed to the wrong company name.",
                "Please confirm once the refund has been processed.",
                "Our finance team needs the corrected document for the month-end closing.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Rechnung {invoice} doppelt berechnet",
                "Frage zur Rechnung {invoice}",
                "Rückerstattung noch nicht erhalten",
                "Falsche Abbuchung von der Kreditkarte",
                "Bitte Rechnungsadresse ändern",
                "Zahlung für Rechnung {invoice} fehlgeschlagen",
                "USt-IdNr. fehlt auf Rechnung {invoice}",
                "Bitte um Gutschrift",
                "Lastschrift im {month} doppelt eingezogen",
                "Mahnung trotz bezahlter Rechnung",
            ),
            openings=(
                "Uns wurde die Rechnung {invoice} doppelt berechnet.",
                "Der Betrag von {amount} auf Rechnung {invoice} scheint falsch zu sein.",
                "Ich habe am {date} eine Rückerstattung von {amount} beantragt, aber nichts "
                "erhalten.",
                "Unsere Kreditkarte wurde mit {amount} belastet, ohne dass es eine Rechnung gab.",
                "Bitte schicken Sie uns eine korrigierte Rechnung mit der neuen Rechnungsadresse.",
                "Die Zahlung für Rechnung {invoice} schlug fehl, obwohl die Karte gültig ist.",
                "Auf Rechnung {invoice} fehlt unsere USt-IdNr., daher können wir sie nicht buchen.",
                "Können Sie uns eine Gutschrift über die zu viel berechneten {amount} ausstellen?",
                "Die Lastschrift für {month} wurde zweimal von unserem Konto abgebucht.",
                "Wir haben Rechnung {invoice} überwiesen und trotzdem eine Mahnung erhalten.",
            ),
            details=(
                "Unsere Kundennummer lautet {custno}.",
                "Der Kontoauszug mit beiden Abbuchungen ist im Anhang.",
                "Die Rechnung ist auf den falschen Firmennamen ausgestellt.",
                "Bitte bestätigen Sie kurz, wenn die Erstattung veranlasst wurde.",
                "Unsere Finanzabteilung braucht den korrigierten Beleg für den Monatsabschluss.",
            ),
        ),
    },
    "Account Access": {
        "en": Templates(
            subjects=(
                "Password reset email not arriving",
                "Account locked after too many attempts",
                "2FA code not accepted",
                "Cannot log in to the portal",
                "Lost my authenticator phone",
                "Password reset link expired",
                "SSO login loops back to the start page",
                "Locked out of my account",
                "Please unlock the account of {name}",
                "Login fails with access denied",
            ),
            openings=(
                "I forgot my password and the reset email never arrives.",
                "My account was locked after three failed login attempts.",
                "The two-factor code from my authenticator app is always rejected.",
                "I cannot log in to the customer portal, it says my credentials are invalid.",
                "I got a new phone and lost access to my 2FA codes.",
                "The password reset link says it has expired as soon as I click it.",
                "Single sign-on keeps redirecting me back to the login page.",
                "I am locked out of my account since I changed my password yesterday.",
                "Please unlock the user account of {name}.",
                "My login worked yesterday but today I get 'access denied'.",
            ),
            details=(
                "My username is {user}.",
                "I already tried resetting the password twice.",
                "The login page shows no error, it just reloads.",
                "I checked the spam folder as well.",
                "I tried a different browser too.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Passwort zurücksetzen funktioniert nicht",
                "Konto nach zu vielen Versuchen gesperrt",
                "2FA-Code wird nicht akzeptiert",
                "Kein Login im Portal möglich",
                "Authenticator-Handy verloren",
                "Link zum Zurücksetzen des Passworts abgelaufen",
                "SSO-Anmeldung hängt in einer Schleife",
                "Ausgesperrt nach Passwortänderung",
                "Bitte Konto von {name} entsperren",
                "Anmeldung: Zugriff verweigert",
            ),
            openings=(
                "Ich habe mein Passwort vergessen und die E-Mail zum Zurücksetzen kommt nie an.",
                "Mein Konto wurde nach drei fehlgeschlagenen Anmeldeversuchen gesperrt.",
                "Der Zwei-Faktor-Code aus meiner Authenticator-App wird immer abgelehnt.",
                "Ich kann mich nicht im Kundenportal anmelden, die Zugangsdaten seien ungültig.",
                "Ich habe ein neues Handy und keinen Zugriff mehr auf meine 2FA-Codes.",
                "Der Link zum Zurücksetzen des Passworts ist schon abgelaufen, wenn ich ihn öffne.",
                "Single Sign-On leitet mich immer wieder auf die Anmeldeseite zurück.",
                "Seit ich gestern mein Passwort geändert habe, bin ich ausgesperrt.",
                "Bitte entsperren Sie das Benutzerkonto von {name}.",
                "Gestern ging die Anmeldung noch, heute bekomme ich 'Zugriff verweigert'.",
            ),
            details=(
                "Mein Benutzername ist {user}.",
                "Ich habe das Passwort schon zweimal zurückgesetzt.",
                "Die Anmeldeseite zeigt keinen Fehler, sie lädt nur neu.",
                "Im Spam-Ordner habe ich auch schon nachgesehen.",
                "Einen anderen Browser habe ich ebenfalls probiert.",
            ),
        ),
    },
    "Hardware": {
        "en": Templates(
            subjects=(
                "Printer {printer} not printing",
                "Laptop won't turn on",
                "Monitor flickering",
                "Broken screen on {laptop}",
                "Docking station does not detect monitors",
                "Keyboard keys not working",
                "Laptop battery drains quickly",
                "Printer offline",
                "Second monitor shows no signal",
                "Laptop fan very loud and hot",
            ),
            openings=(
                "The {printer} on our floor stopped printing and shows a paper jam.",
                "My {laptop} does not turn on anymore, the power LED stays off.",
                "The {monitor} monitor keeps flickering every few seconds.",
                "The screen of my {laptop} is cracked after it fell off the desk.",
                "The docking station does not detect my external monitors.",
                "Several keys on my keyboard stopped working.",
                "The battery of my {laptop} drains within an hour.",
                "The {printer} shows as offline although it is switched on.",
                "My second monitor says 'no signal' when connected to the {laptop}.",
                "The fan of my {laptop} is extremely loud and the laptop gets very hot.",
            ),
            details=(
                "The asset tag on the device is {asset}.",
                "I already tried a different power cable.",
                "The toner was replaced last week.",
                "It is the device in room {room}.",
                "The device is about {years} years old.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Drucker {printer} druckt nicht",
                "Laptop lässt sich nicht einschalten",
                "Monitor flackert",
                "Display vom {laptop} gebrochen",
                "Dockingstation erkennt Monitore nicht",
                "Tastatur defekt",
                "Akku vom Laptop hält nicht lange",
                "Drucker {printer} offline",
                "Zweiter Bildschirm zeigt kein Signal",
                "Laptop-Lüfter sehr laut",
            ),
            openings=(
                "Der Drucker {printer} auf unserer Etage druckt nicht mehr, Papierstau.",
                "Mein {laptop} lässt sich nicht mehr einschalten, die Power-LED bleibt aus.",
                "Der Monitor {monitor} flackert alle paar Sekunden.",
                "Das Display meines {laptop} ist gesprungen, er ist vom Tisch gefallen.",
                "Die Dockingstation erkennt meine externen Monitore nicht.",
                "Mehrere Tasten meiner Tastatur funktionieren nicht mehr.",
                "Der Akku meines {laptop} ist nach einer Stunde leer.",
                "Der Drucker {printer} wird als offline angezeigt, obwohl er eingeschaltet ist.",
                "Mein zweiter Bildschirm zeigt 'Kein Signal', wenn er am {laptop} hängt.",
                "Der Lüfter meines Laptops ist extrem laut und das Gerät wird sehr heiß.",
            ),
            details=(
                "Die Inventarnummer des Geräts ist {asset}.",
                "Ein anderes Netzkabel habe ich schon ausprobiert.",
                "Der Toner wurde letzte Woche getauscht.",
                "Es geht um das Gerät in Raum {room}.",
                "Das Gerät ist etwa {years} Jahre alt.",
            ),
        ),
    },
    "Returns and Exchanges": {
        "en": Templates(
            subjects=(
                "Item arrived damaged, order {order}",
                "Wrong item delivered for order {order}",
                "Exchange request for the {item}",
                "Package arrived broken",
                "Return label missing for order {order}",
                "Defective {item}, need a replacement",
                "How do I return the {item}?",
                "Incomplete and damaged delivery",
                "Pickup for the return of order {order}",
                "Exchange not shipped yet",
            ),
            openings=(
                "The {item} from order {order} arrived damaged and I would like to return it.",
                "We received the wrong item in order {order} and need an exchange.",
                "I would like to exchange the {item} for a different model.",
                "The package arrived with a crushed box and the {item} inside is scratched.",
                "Please send me a return label for order {order}.",
                "The {item} we ordered is defective and we want a replacement.",
                "I want to return the {item}, it does not meet our needs.",
                "Half of the delivery for order {order} was missing and one box was crushed.",
                "Can you arrange a pickup for the return of order {order}?",
                "The exchange I requested on {date} has not been shipped yet.",
            ),
            details=(
                "The parcel was delivered on {date}.",
                "I attached photos of the damaged packaging.",
                "The item is unused and still in the original box.",
                "The delivery note says order {order}.",
                "We are still within the 30-day return window.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Ware beschädigt angekommen, Bestellung {order}",
                "Falscher Artikel geliefert, Bestellung {order}",
                "Umtausch: {item}",
                "Paket kaputt angekommen",
                "Rücksendeetikett für Bestellung {order}",
                "Defekter Artikel: {item}, bitte Ersatz",
                "Rücksendung: {item}",
                "Lieferung unvollständig und beschädigt",
                "Abholung für Rücksendung {order}",
                "Umtausch noch nicht verschickt",
            ),
            openings=(
                "Der Artikel {item} aus Bestellung {order} kam beschädigt an, ich will ihn "
                "zurückgeben.",
                "Wir haben in Bestellung {order} den falschen Artikel erhalten und möchten ihn "
                "umtauschen.",
                "Ich möchte den Artikel {item} gegen ein anderes Modell umtauschen.",
                "Das Paket kam mit eingedrücktem Karton an und der Artikel {item} ist zerkratzt.",
                "Bitte schicken Sie mir ein Rücksendeetikett für Bestellung {order}.",
                "Der bestellte Artikel {item} ist defekt, wir möchten einen Ersatz.",
                "Ich möchte den Artikel {item} zurückgeben, er passt nicht zu unserem Bedarf.",
                "Bei Bestellung {order} fehlte die Hälfte der Lieferung und ein Karton war "
                "zerdrückt.",
                "Können Sie eine Abholung für die Rücksendung von Bestellung {order} organisieren?",
                "Der Umtausch, den ich am {date} beantragt habe, wurde noch nicht verschickt.",
            ),
            details=(
                "Das Paket wurde am {date} zugestellt.",
                "Fotos der beschädigten Verpackung sind im Anhang.",
                "Der Artikel ist unbenutzt und noch originalverpackt.",
                "Auf dem Lieferschein steht Bestellung {order}.",
                "Wir sind noch innerhalb der 30-tägigen Rückgabefrist.",
            ),
        ),
    },
    "Sales and Pre-Sales": {
        "en": Templates(
            subjects=(
                "Request for quote: {seats} licences",
                "Pricing for {product}",
                "Demo request for {product}",
                "Volume discount for {seats} users",
                "Upgrade from {product} to the enterprise plan",
                "Trial extension for {product}",
                "Comparison of plans",
                "Licence renewal offer",
                "Formal quote for {product}",
                "Callback from sales about {product}",
            ),
            openings=(
                "We are interested in {product} and would like a quote for {seats} licences.",
                "Could you send us your current pricing for {product}?",
                "We would like to book a demo of {product} for our team.",
                "Do you offer a volume discount for {seats} users?",
                "We plan to upgrade from {product} to the enterprise plan and need an offer.",
                "Is it possible to extend our trial of {product} by two weeks?",
                "What is the difference between the standard and the premium plan of {product}?",
                "Please send us an offer for renewing our {seats} licences.",
                "Our procurement needs a formal quote for {product} including support.",
                "Can one of your sales representatives call me about {product}?",
            ),
            details=(
                "We currently have about {seats} employees.",
                "We would prefer a three-year term.",
                "Our budget decision is planned for {month}.",
                "Please include on-premise deployment options.",
                "We are comparing several vendors at the moment.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Angebotsanfrage: {seats} Lizenzen",
                "Preise für {product}",
                "Demo-Anfrage für {product}",
                "Mengenrabatt für {seats} Benutzer",
                "Upgrade von {product} auf Enterprise",
                "Verlängerung der Testphase für {product}",
                "Vergleich der Tarife",
                "Angebot zur Lizenzverlängerung",
                "Formelles Angebot für {product}",
                "Rückruf vom Vertrieb zu {product}",
            ),
            openings=(
                "Wir interessieren uns für {product} und hätten gern ein Angebot für {seats} "
                "Lizenzen.",
                "Könnten Sie uns Ihre aktuelle Preisliste für {product} schicken?",
                "Wir würden gern eine Demo von {product} für unser Team vereinbaren.",
                "Bieten Sie einen Mengenrabatt für {seats} Benutzer an?",
                "Wir planen ein Upgrade von {product} auf den Enterprise-Tarif und brauchen ein "
                "Angebot.",
                "Ist es möglich, unsere Testphase von {product} um zwei Wochen zu verlängern?",
                "Was ist der Unterschied zwischen dem Standard- und dem Premium-Tarif von "
                "{product}?",
                "Bitte senden Sie uns ein Angebot zur Verlängerung unserer {seats} Lizenzen.",
                "Unser Einkauf benötigt ein formelles Angebot für {product} inklusive Support.",
                "Kann mich jemand aus Ihrem Vertrieb wegen {product} anrufen?",
            ),
            details=(
                "Wir haben derzeit etwa {seats} Mitarbeiter.",
                "Wir bevorzugen eine Laufzeit von drei Jahren.",
                "Die Budgetentscheidung ist für {month} geplant.",
                "Bitte berücksichtigen Sie auch On-Premise-Optionen.",
                "Wir vergleichen gerade mehrere Anbieter.",
            ),
        ),
    },
    "Human Resources": {
        "en": Templates(
            subjects=(
                "Question about my payslip for {month}",
                "Holiday request",
                "Onboarding for {name}",
                "Change to my employment contract",
                "Sick leave certificate",
                "Overtime not shown on payslip",
                "Parental leave",
                "Remaining vacation days",
                "New bank details for my salary",
                "Certificate of employment",
            ),
            openings=(
                "My payslip for {month} shows fewer hours than I worked.",
                "I would like to request holiday from {date} for two weeks.",
                "{name} starts on {date} and we still need the onboarding plan.",
                "I would like to reduce my working hours, how do I change my employment contract?",
                "Where should I submit my sick leave certificate?",
                "My overtime from last month is missing on the payslip.",
                "I am planning to take parental leave and need information about the process.",
                "How many vacation days do I have left this year?",
                "Please update the bank account for my salary payments.",
                "I need a certificate of employment for my landlord.",
            ),
            details=(
                "My employee number is {empno}.",
                "My manager has already approved it.",
                "I attached the signed form.",
                "Please let me know which documents you need.",
                "I work part-time in the {dept} team.",
            ),
        ),
        "de": Templates(
            subjects=(
                "Frage zur Gehaltsabrechnung {month}",
                "Urlaubsantrag",
                "Onboarding für {name}",
                "Änderung des Arbeitsvertrags",
                "Krankmeldung",
                "Überstunden fehlen auf der Abrechnung",
                "Elternzeit",
                "Resturlaub",
                "Neue Bankverbindung für das Gehalt",
                "Arbeitgeberbescheinigung",
            ),
            openings=(
                "Auf meiner Gehaltsabrechnung für {month} stehen weniger Stunden, als ich "
                "gearbeitet habe.",
                "Ich möchte ab dem {date} zwei Wochen Urlaub beantragen.",
                "{name} fängt am {date} bei uns an und wir brauchen noch den Onboarding-Plan.",
                "Ich möchte meine Arbeitszeit reduzieren, wie ändere ich meinen Arbeitsvertrag?",
                "Wo reiche ich meine Arbeitsunfähigkeitsbescheinigung ein?",
                "Meine Überstunden vom letzten Monat fehlen auf der Gehaltsabrechnung.",
                "Ich plane Elternzeit und brauche Informationen zum Ablauf.",
                "Wie viele Urlaubstage habe ich dieses Jahr noch?",
                "Bitte ändern Sie das Konto für meine Gehaltszahlungen.",
                "Ich brauche eine Arbeitgeberbescheinigung für meinen Vermieter.",
            ),
            details=(
                "Meine Personalnummer ist {empno}.",
                "Meine Führungskraft hat bereits zugestimmt.",
                "Das unterschriebene Formular ist im Anhang.",
                "Bitte sagen Sie mir, welche Unterlagen Sie brauchen.",
                "Ich arbeite in Teilzeit im Team {dept}.",
            ),
        ),
    },
}

# Urgency cues are shared by all queues so that priority never leaks the queue (or vice versa).
PRIORITY_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "high": (
            "Production is down and we cannot process any orders.",
            "This is urgent, all staff in the office are affected.",
            "We have a deadline today, so please treat this as urgent.",
            "The whole team is blocked until this is fixed.",
            "Customers are affected right now, please help immediately.",
            "This is business critical and needs attention as soon as possible.",
            "Nobody in {dept} can work at the moment.",
            "All staff at the {site} site are affected, please escalate.",
            "We need this resolved within the hour, our deadline is today.",
            "Urgent: this is stopping our work completely.",
        ),
        "medium": (
            "We found a workaround for now, but it is not ideal.",
            "Could you look into this sometime this week?",
            "It is annoying, but I can still work.",
            "A fix by the end of the week would be great.",
            "For now I am using a workaround, but please have a look.",
            "It happens a few times a day.",
            "Not critical, but it slows me down.",
            "Please let me know what the next steps are this week.",
        ),
        "low": (
            "No rush, whenever you have time.",
            "Just a quick question, nothing pressing.",
            "This is more of a feature wish for the future.",
            "When you have time, could you let me know?",
            "Low priority, I just wanted to ask.",
            "It is not blocking anything, I am just curious.",
            "Maybe something to consider for a later release.",
            "Please answer whenever it suits you, no hurry.",
        ),
    },
    "de": {
        "high": (
            "Die Produktion steht still, bitte sofort melden.",
            "Das ist dringend, die ganze Abteilung ist betroffen.",
            "Wir haben heute eine Deadline, bitte dringend bearbeiten.",
            "Alle Mitarbeiter am Standort {site} sind betroffen.",
            "Bitte sofort eskalieren, wir können nicht weiterarbeiten.",
            "Das ist geschäftskritisch und muss heute noch gelöst werden.",
            "Kunden sind gerade betroffen, bitte umgehend helfen.",
            "Das ganze Team ist blockiert, bis das behoben ist.",
            "In der Abteilung {dept} kann gerade niemand arbeiten, dringend!",
            "Sehr dringend, die Frist läuft heute ab.",
        ),
        "medium": (
            "Es gibt einen Workaround, aber das ist auf Dauer keine Lösung.",
            "Könnten Sie sich das diese Woche ansehen?",
            "Es nervt, aber ich kann weiterarbeiten.",
            "Eine Lösung bis Ende der Woche wäre gut.",
            "Momentan behelfe ich mich anders, aber bitte schauen Sie es sich an.",
            "Das passiert ein paar Mal am Tag.",
            "Nicht kritisch, aber es bremst mich aus.",
            "Bitte teilen Sie mir diese Woche die nächsten Schritte mit.",
        ),
        "low": (
            "Nicht eilig, wann immer Sie Zeit haben.",
            "Nur eine kurze Frage, nichts Eiliges.",
            "Das ist eher ein Wunsch für die Zukunft.",
            "Wenn Sie Zeit haben, geben Sie mir bitte Bescheid.",
            "Keine Eile, es blockiert nichts.",
            "Vielleicht etwas für ein späteres Update.",
            "Antwort gerne, wenn es gerade passt.",
            "Reine Interessensfrage, hat keine Eile.",
        ),
    },
}

# Vague cues used by the ambiguous tickets of every priority: the label is not in the text.
MILD_CUES: dict[str, tuple[str, ...]] = {
    "en": (
        "It would be nice to get this sorted soon.",
        "Please have a look when possible.",
        "It is somewhat important for us.",
        "I would appreciate a quick reply.",
    ),
    "de": (
        "Wäre schön, wenn das bald erledigt wäre.",
        "Bitte schauen Sie es sich an, wenn möglich.",
        "Es ist uns schon etwas wichtig.",
        "Über eine schnelle Antwort würde ich mich freuen.",
    ),
}

SUBJECT_MARKS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "high": ("URGENT: ", "Urgent - ", "[URGENT] "),
        "low": ("Question: ", "Quick question: "),
    },
    "de": {
        "high": ("DRINGEND: ", "Dringend - ", "[DRINGEND] "),
        "low": ("Frage: ", "Kurze Frage: "),
    },
}

GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("Hi,", "Hello,", "Hello support team,", "Dear Sir or Madam,", "Hi team,", "Morning,"),
    "de": (
        "Hallo,",
        "Guten Tag,",
        "Sehr geehrte Damen und Herren,",
        "Hallo zusammen,",
        "Moin,",
        "Liebes Support-Team,",
        "Guten Morgen,",
    ),
}
CLOSINGS: dict[str, tuple[str, ...]] = {
    "en": (
        "Thanks in advance.",
        "Best regards, {name}",
        "Thank you!",
        "Kind regards\n{name}",
        "Cheers, {name}",
        "Thanks, {name}",
    ),
    "de": (
        "Vielen Dank im Voraus.",
        "Mit freundlichen Grüßen\n{name}",
        "Danke und viele Grüße, {name}",
        "Beste Grüße\n{name}",
        "Danke!",
        "VG {name}",
    ),
}
FILLERS: dict[str, tuple[str, ...]] = {
    "en": (
        "I hope this is the right place to ask.",
        "Let me know if you need more information.",
        "You can reach me at extension {ext}.",
        "I am working from the {site} office today.",
    ),
    "de": (
        "Ich hoffe, ich bin hier richtig.",
        "Melden Sie sich, falls Sie weitere Infos brauchen.",
        "Sie erreichen mich unter der Durchwahl {ext}.",
        "Ich bin heute im Büro {site}.",
    ),
}
# "Also, ..." style lead-ins for the second topic of a mixed ticket.
SECOND_TOPIC_LEADS: dict[str, tuple[str, ...]] = {
    "en": ("Also: ", "Separately: ", "One more thing: ", "Another issue: "),
    "de": ("Außerdem: ", "Noch etwas: ", "Zusätzlich: ", "Ein weiteres Problem: "),
}

MONTHS = {
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
    "de": (
        "Januar", "Februar", "März", "April", "Mai", "Juni",
        "Juli", "August", "September", "Oktober", "November", "Dezember",
    ),
}  # fmt: skip
NAMES = (
    "Anna Schmidt", "Lukas Müller", "Sarah Johnson", "Michael Weber", "Emily Clark",
    "Jonas Becker", "Laura Fischer", "David Brown", "Sophie Wagner", "Tom Hoffmann",
    "Mia Schulz", "James Wilson", "Jörg Krüger", "Priya Patel", "Fatma Yilmaz", "Chen Wei",
)  # fmt: skip

Filler = tuple[str, ...] | Callable[[random.Random], str]

# Slot values; a callable draws a fresh value (numbers, dates) from the ticket's generator.
COMMON_SLOTS: dict[str, Filler] = {
    "app": (
        "Outlook", "Microsoft Teams", "SAP GUI", "Salesforce", "Jira", "Excel", "Zoom",
        "Slack", "DATEV", "Confluence", "the CRM app", "SharePoint",
    ),
    "error": (
        "0x80070005", "ERR_CONNECTION_RESET", "E-1042", "0xC0000142", "HTTP 500",
        "SSL_ERROR_BAD_CERT", "0x8024402C", "E-2217", "HTTP 503", "ORA-12541",
    ),
    "printer": (
        "HP LaserJet M404", "Brother HL-L2350", "Canon iR C3226", "Kyocera P2040",
        "Xerox VersaLink C405", "Epson WF-C5790",
    ),
    "laptop": (
        "Lenovo ThinkPad T14", "Dell Latitude 5440", "HP EliteBook 840", "MacBook Pro 14",
        "Dell XPS 13", "Lenovo ThinkPad X1",
    ),
    "monitor": ("Dell U2722D", "LG 27UL500", "Samsung S24R350", "EIZO EV2485", "BenQ GW2480"),
    "product": (
        "TicketFlow Pro", "HelpDesk Cloud", "ServiceHub Enterprise", "DeskMate Starter",
        "QueueWise Analytics", "ServiceHub Team",
    ),
    "site": ("Berlin", "Hamburg", "Frankfurt", "Leipzig", "Stuttgart", "Dresden", "Bremen"),
    "name": NAMES,
    "user": ("a.schmidt", "l.mueller", "sjohnson", "m.weber", "eclark", "j.becker", "lfischer"),
    "invoice": lambda r: f"INV-{r.randint(2023, 2025)}-{r.randint(1, 99999):05d}",
    "order": lambda r: str(r.randint(100000, 999999)),
    "custno": lambda r: f"C-{r.randint(10000, 99999)}",
    "empno": lambda r: str(r.randint(1000, 9999)),
    "asset": lambda r: f"IT-{r.randint(1000, 9999)}",
    "room": lambda r: f"{r.randint(1, 4)}.{r.randint(1, 40):02d}",
    "years": lambda r: str(r.randint(2, 6)),
    "ext": lambda r: str(r.randint(100, 899)),
    "seats": lambda r: str(r.choice((5, 10, 15, 20, 25, 40, 50, 75, 100, 150, 250, 500))),
}  # fmt: skip
LANGUAGE_SLOTS: dict[str, dict[str, Filler]] = {
    "en": {
        "month": MONTHS["en"],
        "date": lambda r: f"{r.choice(MONTHS['en'])} {r.randint(1, 28)}",
        "amount": lambda r: f"{r.randint(19, 4999)}.{r.choice(('00', '50', '90', '99'))} EUR",
        "dept": ("logistics", "marketing", "the warehouse", "customer service", "design"),
        "item": (
            "office chair", "standing desk", "webcam", "headset", "desk lamp",
            "coffee machine", "whiteboard", "storage cabinet", "monitor arm", "footrest",
        ),
    },
    "de": {
        "month": MONTHS["de"],
        "date": lambda r: f"{r.randint(1, 28)}. {r.choice(MONTHS['de'])}",
        "amount": lambda r: f"{r.randint(19, 4999)},{r.choice(('00', '50', '90', '99'))} EUR",
        "dept": ("Logistik", "Marketing", "Lager", "Kundenservice", "Konstruktion"),
        "item": (
            "Bürostuhl", "Stehpult", "Webcam", "Headset", "Schreibtischlampe",
            "Kaffeemaschine", "Whiteboard", "Aktenschrank", "Monitorhalterung", "Fußstütze",
        ),
    },
}  # fmt: skip


class _Slots(dict[str, str]):
    """Fills template fields on first use, so a field repeated in one ticket stays consistent."""

    def __init__(self, rng: random.Random, language: str) -> None:
        super().__init__()
        self._rng = rng
        self._fillers = {**COMMON_SLOTS, **LANGUAGE_SLOTS[language]}

    def __missing__(self, key: str) -> str:
        filler = self._fillers[key]
        value = self._rng.choice(filler) if isinstance(filler, tuple) else filler(self._rng)
        self[key] = value
        return value


def _ticket(rng: random.Random) -> tuple[str, str, str, str, str]:
    """Draw one ticket as (subject, body, queue, priority, language)."""
    language = rng.choice(LANGUAGES)
    queue = rng.choices(QUEUES, weights=tuple(QUEUE_WEIGHTS.values()))[0]
    priority = rng.choices(PRIORITIES, weights=PRIORITY_WEIGHTS)[0]
    slots = _Slots(rng, language)
    main = TEMPLATES[queue][language]

    # Subjects and openings are parallel tuples; most subjects summarise their own opening.
    topic = rng.randrange(len(main.openings))
    sentences = [main.openings[topic]]
    subject = main.subjects[topic] if rng.random() < 0.75 else rng.choice(main.subjects)
    if rng.random() < MIXED_TOPIC_RATE:
        # The second topic gets equal weight (it may even own the subject); the label does not.
        other = TEMPLATES[rng.choice([q for q in QUEUES if q != queue])][language]
        other_topic = rng.randrange(len(other.openings))
        pair = [sentences[0], other.openings[other_topic]]
        if rng.random() < 0.5:
            pair.reverse()
        sentences = [pair[0], rng.choice(SECOND_TOPIC_LEADS[language]) + pair[1]]
        if rng.random() < 0.5:
            subject = other.subjects[other_topic]
    elif rng.random() < 0.55:
        sentences.append(rng.choice(main.details))

    mild = rng.random() < MILD_CUE_RATE
    if mild:
        cue: str | None = rng.choice(MILD_CUES[language])
    elif priority == "medium" and rng.random() < NO_CUE_MEDIUM_RATE:
        cue = None
    else:
        cue = rng.choice(PRIORITY_CUES[language][priority])
    if cue is not None:
        first = not mild and rng.random() < CUE_FIRST_RATE[priority]
        sentences.insert(0 if first else len(sentences), cue)
    if rng.random() < 0.2:
        sentences.append(rng.choice(FILLERS[language]))

    if not mild and rng.random() < SUBJECT_MARK_RATE[priority]:
        subject = rng.choice(SUBJECT_MARKS[language][priority]) + subject
    if rng.random() < EMPTY_SUBJECT_RATE:
        subject = ""

    body = " ".join(sentences)
    if rng.random() < 0.6:
        body = rng.choice(GREETINGS[language]) + rng.choice(("\n", " ")) + body
    if rng.random() < 0.55:
        body += rng.choice(("\n", " ")) + rng.choice(CLOSINGS[language])
    return subject.format_map(slots), body.format_map(slots), queue, priority, language


def generate_tickets(rows: int, seed: int = 0) -> pd.DataFrame:
    """Return `rows` synthetic tickets with columns subject, body, queue, priority, language.

    The same (rows, seed) always gives the same frame; a larger `rows` with the same seed
    extends the smaller frame, since tickets are drawn one after another.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    rng = random.Random(seed)
    return pd.DataFrame([_ticket(rng) for _ in range(rows)], columns=list(COLUMNS))


def write_sample_csv(path: str | os.PathLike[str], rows: int, seed: int = 0) -> int:
    """Write `generate_tickets(rows, seed)` to `path` as UTF-8 CSV and return the row count.

    The file is written to a temporary name in the same directory and then renamed, so a
    reader never sees a half-written file. Empty subjects come back as NaN from a plain
    `pandas.read_csv`.
    """
    frame = generate_tickets(rows, seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, frame.to_csv(index=False).encode("utf-8"))
    return len(frame)
