"""Changelists cost a fixed number of queries however many rows they show."""

import pytest

from apps.cdr.models import Cdr
from apps.peers.models import Peer
from tests.admin.conftest import admin_url, listed
from tests.factories import CdrFactory, make_peer

ROWS = 30


@pytest.fixture
def many_peers(cast):
    for n in range(ROWS):
        make_peer(f"Bulk {n:02d}", reseller=cast.a.reseller, sell_rate_table_id=cast.a.sell_table.pk)


@pytest.fixture
def many_cdrs(cast):
    for n in range(ROWS):
        CdrFactory(
            customer=cast.a.customer if n % 2 else cast.b.customer,
            supplier=cast.supplier,
            node=cast.node,
            sip_code=200 if n % 3 else 486,
        )


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_peer_changelist_queries_do_not_grow_with_rows(
    who, many_peers, cast, login, django_assert_max_num_queries
):
    client = login(cast.operator if who == "operator" else cast.a.staff)
    with django_assert_max_num_queries(10):
        response = client.get(admin_url(Peer, "changelist"))
    assert len(listed(response)) >= ROWS


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_cdr_changelist_queries_do_not_grow_with_rows(
    who, many_cdrs, cast, login, django_assert_max_num_queries
):
    client = login(cast.operator if who == "operator" else cast.a.staff)
    with django_assert_max_num_queries(12):
        response = client.get(admin_url(Cdr, "changelist"))
    assert len(listed(response)) == (ROWS if who == "operator" else ROWS // 2)


def test_cdr_changelist_filters_by_sip_class_and_rating_state(many_cdrs, cast, login):
    client = login(cast.operator)
    busy = listed(client.get(admin_url(Cdr, "changelist"), {"sip_class": "4"}))
    assert busy == set(Cdr.objects.filter(sip_code=486).values_list("pk", flat=True))
    assert len(busy) == ROWS // 3
    assert listed(client.get(admin_url(Cdr, "changelist"), {"rating_state__exact": "unrated"})) == set()


def test_cdr_changelist_drills_down_by_date_and_searches_by_number(many_cdrs, cast, login):
    client = login(cast.a.staff)
    today = Cdr.objects.first().created_at
    by_day = listed(
        client.get(
            admin_url(Cdr, "changelist"),
            {"created_at__year": today.year, "created_at__month": today.month, "created_at__day": today.day},
        )
    )
    assert len(by_day) == ROWS // 2
    assert listed(client.get(admin_url(Cdr, "changelist"), {"q": "4412"})) == by_day
    assert listed(client.get(admin_url(Cdr, "changelist"), {"q": "999"})) == set()
