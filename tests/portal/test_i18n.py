"""The portal in Spanish: complete catalogues, and every page speaking the visitor's language.

A catalogue entry left empty or fuzzy silently shows English in the middle of a Spanish page,
and a .mo not compiled from the committed .po ships yesterday's wording; both are checked here
rather than by eye. The same msgid translated in two apps' catalogues is resolved by
INSTALLED_APPS order, so each entry must also be what Django actually serves.
"""

import ast
import gettext
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone, translation

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = [
    ROOT / f"apps/{app}/locale/es/LC_MESSAGES/django.po"
    for app in ("portal", "live", "reports", "billing", "peers", "invoicing")
]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def parse_po(path: Path) -> list[dict]:
    """The entries of a .po file: {"flags", "msgctxt", "msgid", "msgid_plural", "msgstr"[, "msgstr[n]"]}.

    Enough of the format for what makemessages writes (no polib in the project).
    """
    entries, entry, field = [], None, None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if entry:
                entries.append(entry)
            entry, field = None, None
            continue
        entry = entry if entry is not None else {"flags": set()}
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[field] += ast.literal_eval(line)
        else:
            field, _, literal = line.partition(" ")
            entry[field] = ast.literal_eval(literal)
    return entries


def translations(entry: dict) -> list[str]:
    return [value for key, value in entry.items() if key.startswith("msgstr")]


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda path: path.parts[-5])
def test_every_entry_of_the_spanish_catalogue_is_translated(po):
    header, *entries = parse_po(po)

    assert header["msgid"] == ""
    assert "Language: es\n" in header["msgstr"]
    assert "Plural-Forms: nplurals=2; plural=(n != 1);\n" in header["msgstr"]
    assert "fuzzy" not in header["flags"]
    assert entries  # a catalogue that lost its entries would "pass" every check below
    for entry in entries:
        label = (entry.get("msgctxt"), entry["msgid"])
        assert "fuzzy" not in entry["flags"], label
        assert all(text.strip() for text in translations(entry)), label
        if "msgid_plural" in entry:
            assert {"msgstr[0]", "msgstr[1]"} <= entry.keys(), label
        # A placeholder lost or renamed raises KeyError when the page renders.
        wanted = sorted(PLACEHOLDER.findall(entry["msgid"]))
        for text in translations(entry):
            assert sorted(PLACEHOLDER.findall(text)) == wanted, label


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda path: path.parts[-5])
def test_the_committed_mo_is_compiled_from_the_po_and_is_what_django_serves(po):
    with open(po.with_suffix(".mo"), "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    _, *entries = parse_po(po)

    with translation.override("es"):
        for entry in entries:
            context, msgid = entry.get("msgctxt"), entry["msgid"]
            if "msgid_plural" in entry:
                plural = entry["msgid_plural"]
                for n, key in ((1, "msgstr[0]"), (5, "msgstr[1]")):
                    assert compiled.ngettext(msgid, plural, n) == entry[key], msgid
                    assert translation.ngettext(msgid, plural, n) == entry[key], msgid
            elif context:
                assert compiled.pgettext(context, msgid) == entry["msgstr"], (context, msgid)
                assert translation.pgettext(context, msgid) == entry["msgstr"], (context, msgid)
            else:
                assert compiled.gettext(msgid) == entry["msgstr"], msgid
                # Another app's catalogue earlier in INSTALLED_APPS would win with its own wording.
                assert translation.gettext(msgid) == entry["msgstr"], msgid


# (URL name, Spanish text the page shows, the English text it replaces)
PAGES = [
    (
        "portal:dashboard",
        ["Saldo", "Fondos disponibles", "Límite de crédito", "Últimas llamadas"],
        ["Balance", "Latest calls"],
    ),
    (
        "portal:cdrs",
        ["Duración mín. (s)", "Cualquier estado", "No hay llamadas que mostrar."],
        ["Min. duration (s)", "No calls to show."],
    ),
    (
        "portal:money",
        ["Movimientos", "Aviso de saldo bajo", "Avisarme cuando mi saldo baje de"],
        ["Ledger", "Low-balance warning"],
    ),
    (
        "portal:prices",
        ["Precios vigentes", "Prefijo o destino"],
        ["Prices in force", "Prefix or destination"],
    ),
    (
        "portal:connectivity",
        ["Adónde enviar sus llamadas", "Cuentas SIP", "Direcciones IP"],
        ["Where to send your calls", "SIP accounts"],
    ),
    (
        "portal:account",
        ["Contraseña del portal", "Claves de API", "Idioma del portal"],
        ["Portal password", "API keys"],
    ),
    (
        "portal:live",
        ["Sus llamadas en curso", "Llamadas simultáneas", "Llamadas por segundo"],
        ["Your calls in progress", "Concurrent calls"],
    ),
    ("portal:numbers", ["Todavía no tiene números", "Números de Customer A"], ["Numbers of Customer A"]),
    (
        "portal:invoices",
        ["Facturas de Customer A", "Todavía no tiene facturas.", "Importe pendiente"],
        ["Invoices of Customer A", "You have no invoices yet."],
    ),
]
# On every page: the frame (base.html) and the menu (nav.py).
FRAME_ES = [
    '<html lang="es">',
    "Portal del cliente",
    "Cerrar sesión",
    "las horas se muestran en",
    "Resumen",
    "Tarifas",
]
FRAME_EN = ['<html lang="en">', "Customer portal", "Sign out", "times are shown in", "Overview", "Prices"]


def lang_cookie(client, code: str):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = code
    return client


@pytest.mark.parametrize(("name", "spanish", "english"), PAGES, ids=[page[0] for page in PAGES])
def test_pages_speak_spanish_with_the_language_cookie(client_a, name, spanish, english):
    body = lang_cookie(client_a, "es").get(reverse(name)).content.decode()

    for text in FRAME_ES + spanish:
        assert text in body, text
    for text in [*english, "Sign out", "Customer portal"]:
        assert text not in body, text


@pytest.mark.parametrize(("name", "spanish", "english"), PAGES, ids=[page[0] for page in PAGES])
def test_pages_stay_english_in_english(client_a, name, spanish, english):
    body = lang_cookie(client_a, "en").get(reverse(name)).content.decode()

    for text in FRAME_EN + english:
        assert text in body, text
    for text in [*spanish, "Cerrar sesión", "Portal del cliente"]:
        assert text not in body, text


def test_the_browser_language_is_used_without_a_cookie(client_a):
    spanish = client_a.get(reverse("portal:dashboard"), headers={"accept-language": "es-ES,es;q=0.9"})
    english = client_a.get(reverse("portal:dashboard"), headers={"accept-language": "en-GB"})

    assert '<html lang="es">' in spanish.content.decode()
    assert "Fondos disponibles" in spanish.content.decode()
    assert '<html lang="en">' in english.content.decode()
    assert "Available funds" in english.content.decode()


def test_sign_in_refuses_staff_in_spanish(client, cast):
    lang_cookie(client, "es")
    page = client.get(reverse("portal:login")).content.decode()
    refused = client.post(
        reverse("portal:login"), {"username": cast.a.staff.get_username(), "password": PASSWORD}
    ).content.decode()

    assert "Iniciar sesión" in page and "¿Ha olvidado su contraseña?" in page
    assert "Este portal es para clientes. El personal de operadores y revendedores" in refused
    assert "Ir al sitio de administración" in refused


def test_a_message_after_an_action_is_in_spanish(client_a):
    lang_cookie(client_a, "es")
    response = client_a.post(reverse("portal:logout"), follow=True)

    assert "Ha cerrado la sesión." in response.content.decode()


def test_the_password_reset_mail_is_in_the_language_it_was_asked_in(client, cast):
    cast.a.customer_user.email = "a@example.com"
    cast.a.customer_user.save()
    lang_cookie(client, "es")

    client.post(reverse("portal:password-reset"), {"email": "a@example.com"})

    (message,) = mail.outbox
    assert message.subject == "Su contraseña del portal Smartswitch"
    assert (
        "Alguien ha solicitado restablecer la contraseña del usuario del portal customer_a." in message.body
    )
    assert "Someone asked" not in message.body


def test_a_form_error_of_the_portal_is_in_spanish(client_a):
    lang_cookie(client_a, "es")

    today = timezone.localdate()
    backwards = {"start": today.isoformat(), "end": (today - timedelta(days=9)).isoformat()}

    body = client_a.get(reverse("portal:cdrs"), backwards).content.decode()

    assert "La fecha final es anterior a la fecha inicial." in body
    assert "The end date is before the start date." not in body
