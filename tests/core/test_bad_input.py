"""Odd input gets a 400 (or a form error) naming what is wrong, never a 500."""

import pytest
from rest_framework.test import APIClient


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/cdrs/?created_after=0001-01-01T00:00:00%2B05:00", "created_after"),
        ("/api/v1/cdrs/?created_before=99999-01-01", "created_before"),
        ("/api/v1/ledger-entries/?occurred_before=0001-01-01T00:00:00%2B05:00", "occurred_before"),
        ("/api/v1/rates/?effective_at=not-a-date", "effective_at"),
    ],
)
def test_out_of_range_moments_are_a_400_naming_the_filter(cast, url, field):
    response = APIClient().get(url, HTTP_AUTHORIZATION=f"Bearer {cast.operator_key}")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("header", [" ", "Bearer", "Bearer a b"])
def test_malformed_authorization_headers_are_refused_cleanly(db, header):
    response = APIClient().get("/api/v1/peers/", HTTP_AUTHORIZATION=header)
    assert response.status_code in (401, 403)


def test_the_portal_date_filter_refuses_the_end_of_time(cast, client):
    from tests.conftest import PASSWORD

    client.login(username=cast.a.customer_user.username, password=PASSWORD)
    response = client.get("/portal/calls/", {"end": "9999-12-31"})
    assert response.status_code == 200
    assert "Choose a day between" in response.content.decode()
