"""The portal's Account page: the portal password, its reset by e-mail, API keys shown once,
and the portal's language remembered for the login."""

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.fraud import login
from apps.fraud.models import AuthFailure
from apps.tenancy import services as tenancy
from apps.tenancy.models import ApiKey, Membership
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD, Cast

ACCOUNT = reverse("portal:account")
NEW_PASSWORD = "Fresh-portal-pass-77"


def lang_of(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


@pytest.fixture
def client_a(client, cast: Cast):
    client.force_login(cast.a.customer_user)
    return client


# Portal password


def test_a_customer_changes_its_password_and_stays_signed_in(client_a, cast):
    response = client_a.post(
        reverse("portal:password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302 and response["Location"] == ACCOUNT
    assert client_a.get(ACCOUNT).status_code == 200  # the session survived the new password
    cast.a.customer_user.refresh_from_db()
    assert cast.a.customer_user.check_password(NEW_PASSWORD)


def test_a_wrong_old_password_changes_nothing(client_a, cast):
    response = client_a.post(
        reverse("portal:password-change"),
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 400
    assert "old password was entered incorrectly" in response.content.decode()
    cast.a.customer_user.refresh_from_db()
    assert cast.a.customer_user.check_password(PASSWORD)


# Password reset by e-mail


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, cast):
    cast.a.customer_user.email = "a@example.com"
    cast.a.customer_user.save()
    login = client.get(reverse("portal:login")).content.decode()
    assert reverse("portal:password-reset") in login

    response = client.post(reverse("portal:password-reset"), {"email": "a@example.com"})

    assert response.status_code == 302 and response["Location"] == reverse("portal:password-reset-done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["a@example.com"] and "customer_a" in message.body
    link = re.search(r"https?://[^/\s]+(/portal/password-reset/[^\s]+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and "new_password1" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done["Location"] == reverse("portal:password-reset-complete")
    assert client.login(username="customer_a", password=NEW_PASSWORD)
    # The link works once.
    assert "This link is used or out of date" in client.get(link, follow=True).content.decode()


@pytest.mark.parametrize("who", ["staff", "operator", "unknown"])
def test_the_reset_mails_no_one_but_customers(client, cast, who):
    for user in (cast.a.staff, cast.operator):
        user.email = "staff@example.com"
        user.save()
    address = "nobody@example.com" if who == "unknown" else "staff@example.com"

    response = client.post(reverse("portal:password-reset"), {"email": address})

    # The same answer whoever asks: the page does not tell which addresses have logins.
    assert response.status_code == 302 and response["Location"] == reverse("portal:password-reset-done")
    assert mail.outbox == []


# API keys


def key_form(client, **fields) -> dict:
    """The new-key form's fields as the account page renders them (its one-time token)."""
    page = client.get(ACCOUNT).content.decode()
    token = re.search(r'<input type="hidden" name="form_token" value="([^"]+)">', page).group(1)
    return {"form_token": token, **fields}


def test_a_new_key_is_shown_once_and_works(client_a, cast, api):
    response = client_a.post(
        reverse("portal:api-key-create"), key_form(client_a, name="CRM sync", access="read")
    )

    body = response.content.decode()
    assert response.status_code == 200
    token = re.search(r'<code class="secret" id="new-key-secret">(ssk_[^<]+)</code>', body).group(1)
    key = ApiKey.objects.get(name="CRM sync")
    assert (key.scope, key.peer_id, key.access) == (ApiKey.Scope.CUSTOMER, cast.a.customer.pk, "read")
    assert key.digest == ApiKey.digest_of(token)
    assert response.headers["Cache-Control"].startswith("max-age=0")
    again = client_a.get(ACCOUNT).content.decode()
    assert "CRM sync" in again and token not in again and f"ssk_{key.lookup}" in again
    client = api(token)
    assert client.get("/api/v1/peers/").status_code == 200
    assert (
        client.patch(f"/api/v1/peers/{cast.a.customer.pk}/", {"company": "x"}, format="json").status_code
        == 403
    )


def test_a_key_needs_a_name_and_a_known_access(client_a, cast):
    before = ApiKey.objects.count()

    response = client_a.post(reverse("portal:api-key-create"), key_form(client_a, name="", access="admin"))

    assert response.status_code == 400
    assert ApiKey.objects.count() == before
    assert "new-key-secret" not in response.content.decode()


def test_the_same_form_posted_again_makes_no_second_key(client_a, cast):
    # The page that shows the secret answers the post: a reload posts the form again.
    form = key_form(client_a, name="Reloaded", access="read")
    assert client_a.post(reverse("portal:api-key-create"), form).status_code == 200

    again = client_a.post(reverse("portal:api-key-create"), form)

    assert again.status_code == 302 and again["Location"] == ACCOUNT + "#api-keys"
    assert ApiKey.objects.filter(name="Reloaded").count() == 1
    assert "no other key was made" in client_a.get(ACCOUNT).content.decode()
    # Without a token of this session's forms, nothing is made either.
    forged = client_a.post(reverse("portal:api-key-create"), {"name": "Forged", "access": "read"})
    assert forged.status_code == 302 and not ApiKey.objects.filter(name="Forged").exists()
    # A fresh form works.
    fresh = client_a.post(reverse("portal:api-key-create"), key_form(client_a, name="Second", access="read"))
    assert fresh.status_code == 200 and ApiKey.objects.filter(name="Second").count() == 1


def test_a_customer_revokes_its_key(client_a, cast, api):
    key = ApiKey.objects.get(name="A customer")

    response = client_a.post(reverse("portal:api-key-revoke", args=[key.pk]))

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api(cast.a.customer_key).get("/api/v1/peers/").status_code == 401
    assert "Revoked" in client_a.get(ACCOUNT).content.decode()


@pytest.mark.parametrize("name", ["B customer", "A staff", "ops"])
def test_keys_of_anyone_else_cannot_be_revoked_from_the_portal(client_a, cast, name):
    key = ApiKey.objects.get(name=name)

    assert client_a.post(reverse("portal:api-key-revoke", args=[key.pk])).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.parametrize("who", ["operator", "staff_a", "staff_b", "customer_a", "customer_b"])
def test_scoping_matrix(client, cast, who):
    """A customer lists its own keys only; staff and the operator get the customers-only page."""
    tenancy.create_api_key(
        actor=Scope.system(), name="B second", scope=ApiKey.Scope.CUSTOMER, peer=cast.b.customer
    )
    user = {
        "operator": cast.operator,
        "staff_a": cast.a.staff,
        "staff_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[who]
    client.force_login(user)

    page = client.get(ACCOUNT)
    body = page.content.decode()
    listed = set(re.findall(r'<tr class="api-key[^"]*" id="key-\d+">\s*<td>([^<]+)</td>', body))
    expected = {
        "customer_a": {"A customer"},
        "customer_b": {"B customer", "B second"},
    }.get(who)
    if expected is None:
        assert page.status_code == 403 and listed == set()
        assert (
            client.post(reverse("portal:api-key-create"), {"name": "x", "access": "read"}).status_code == 403
        )
        assert not ApiKey.objects.filter(name="x").exists()
        return
    assert page.status_code == 200
    assert listed == expected


# Language


def test_the_chosen_language_serves_the_portal_and_is_remembered_at_sign_in(client_a, cast):
    assert lang_of(client_a.get(ACCOUNT)) == "en"

    response = client_a.post(reverse("portal:language"), {"language": "es"})

    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"
    assert Membership.objects.get(user=cast.a.customer_user).language == "es"
    assert lang_of(client_a.get(ACCOUNT)) == "es"
    assert lang_of(client_a.get(reverse("portal:connectivity"))) == "es"

    # Another browser, without the cookie: signing in brings the choice back.
    fresh = Client()
    signed_in = fresh.post(reverse("portal:login"), {"username": "customer_a", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert fresh.session[SESSION_KEY] == str(cast.a.customer_user.pk)
    assert signed_in.cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"
    assert lang_of(fresh.get(reverse("portal:dashboard"))) == "es"


def test_without_a_choice_the_browser_decides(client, cast):
    client.post(reverse("portal:login"), {"username": "customer_a", "password": PASSWORD})

    assert settings.LANGUAGE_COOKIE_NAME not in client.cookies
    assert lang_of(client.get(ACCOUNT, headers={"accept-language": "es"})) == "es"
    assert lang_of(client.get(ACCOUNT, headers={"accept-language": "en"})) == "en"


def test_an_unknown_language_is_refused(client_a, cast):
    response = client_a.post(reverse("portal:language"), {"language": "xx"})

    assert response.status_code == 400
    assert Membership.objects.get(user=cast.a.customer_user).language == ""


def test_password_reset_e_mails_are_limited_per_address_and_per_e_mail(client, cast):
    """The form cannot flood a customer's mailbox or make us send mail for anyone at will;
    past the limit the page is the same, only no e-mail goes."""
    cast.a.customer_user.email = "a@example.com"
    cast.a.customer_user.save()
    url = reverse("portal:password-reset")

    for _ in range(login.RESETS_PER_EMAIL + 1):
        response = client.post(url, {"email": "a@example.com"}, REMOTE_ADDR="203.0.113.7")
        assert response["Location"] == reverse("portal:password-reset-done")
    assert len(mail.outbox) == login.RESETS_PER_EMAIL
    # From elsewhere: still refused for that e-mail within the hour.
    client.post(url, {"email": "a@example.com"}, REMOTE_ADDR="198.51.100.9")
    assert len(mail.outbox) == login.RESETS_PER_EMAIL
    # One address asking for many e-mails is stopped too.
    for n in range(login.RESETS_PER_SOURCE):
        client.post(url, {"email": f"nobody{n}@example.com"}, REMOTE_ADDR="198.51.100.9")
    AuthFailure.objects.filter(realm=AuthFailure.Realm.RESET, username="a@example.com").delete()
    client.post(url, {"email": "a@example.com"}, REMOTE_ADDR="198.51.100.9")
    assert len(mail.outbox) == login.RESETS_PER_EMAIL
    # An hour later it works again.
    AuthFailure.objects.filter(realm=AuthFailure.Realm.RESET).update(
        created_at=timezone.now() - login.RESET_WINDOW - timedelta(seconds=1)
    )
    client.post(url, {"email": "a@example.com"}, REMOTE_ADDR="198.51.100.9")
    assert len(mail.outbox) == login.RESETS_PER_EMAIL + 1
