"""Who may sign in to the portal, and what everyone else is told."""

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.urls import reverse

from tests.conftest import PASSWORD

DASHBOARD = reverse("portal:dashboard")
LOGIN = reverse("portal:login")
LOGOUT = reverse("portal:logout")


def signed_in_user_id(client):
    return client.session.get(SESSION_KEY)


def test_customer_signs_in_and_lands_on_the_dashboard(client, cast):
    response = client.post(LOGIN, {"username": "customer_a", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == DASHBOARD
    assert signed_in_user_id(client) == str(cast.a.customer_user.pk)
    page = client.get(DASHBOARD)
    assert page.status_code == 200
    assert "Customer A" in page.content.decode()


def test_sign_in_honours_next(client, cast):
    cdrs = reverse("portal:cdrs")
    response = client.post(
        f"{LOGIN}?next={cdrs}", {"username": "customer_a", "password": PASSWORD, "next": cdrs}
    )

    assert response["Location"] == cdrs


def test_wrong_password_is_refused(client, cast):
    response = client.post(LOGIN, {"username": "customer_a", "password": PASSWORD + "x"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert signed_in_user_id(client) is None


@pytest.mark.parametrize("username", ["staff_a", "operator"])
def test_staff_and_operator_are_refused_and_shown_the_admin(client, cast, username):
    response = client.post(LOGIN, {"username": username, "password": PASSWORD})

    body = response.content.decode()
    assert response.status_code == 200
    assert "This portal is for customers" in body
    assert f'href="{reverse("admin:index")}"' in body
    assert signed_in_user_id(client) is None


@pytest.mark.parametrize("who", ["staff", "operator", "nobody"])
def test_signed_in_non_customer_gets_the_customers_only_page(client, cast, who):
    user = {
        "staff": cast.a.staff,
        "operator": cast.operator,
        "nobody": get_user_model().objects.create_user("drifter", password=PASSWORD),
    }[who]
    client.force_login(user)

    for url in (DASHBOARD, reverse("portal:cdrs")):
        response = client.get(url)
        body = response.content.decode()
        assert response.status_code == 403
        assert "This portal is for customers" in body
        assert f'href="{reverse("admin:index")}"' in body
        assert "Customer A" not in body


@pytest.mark.parametrize("url", [DASHBOARD, reverse("portal:cdrs"), "/"])
def test_anonymous_visitor_is_sent_to_sign_in(client, db, url):
    response = client.get(url, follow=True)

    assert response.redirect_chain[-1][0] == f"{LOGIN}?next={DASHBOARD if url == '/' else url}"
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_signed_in_customer_visiting_sign_in_goes_to_the_dashboard(client_a):
    response = client_a.get(LOGIN)

    assert response.status_code == 302
    assert response["Location"] == DASHBOARD


def test_sign_out_ends_the_session(client_a):
    response = client_a.post(LOGOUT, follow=True)

    assert response.redirect_chain == [(LOGIN, 302)]
    assert "You have signed out." in response.content.decode()
    assert signed_in_user_id(client_a) is None
    assert client_a.get(DASHBOARD)["Location"].startswith(LOGIN)


def test_sign_out_needs_a_post(client_a):
    assert client_a.get(LOGOUT).status_code == 405
    assert client_a.get(DASHBOARD).status_code == 200


def test_pages_are_not_cached(client_a):
    assert "no-cache" in client_a.get(DASHBOARD)["Cache-Control"]
