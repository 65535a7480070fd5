"""Ladder and pcap pages from a CDR: who sees which call, and which of its messages."""

import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse

from apps.capture import pcap, services
from apps.capture.collector import FinishedCall
from apps.files.models import FileCopy, StoredFile
from tests.capture.calls import CUSTOMER, answered_call
from tests.factories import CdrFactory, NodeFactory

CALL_ID = "a-leg@test"


@pytest.fixture
def captured(cast, settings, tmp_path):
    """A CDR of reseller A's customer whose call was captured on node1 (a 12-message call)."""
    settings.NODE_NAME = "node1"
    settings.CAPTURES_DIR = tmp_path / "captures"
    cdr = CdrFactory(customer=cast.a.customer, call_id=CALL_ID, source_ip=CUSTOMER[0], node=cast.node)
    stored = services.save_capture(FinishedCall(CALL_ID, answered_call(CALL_ID), "ended"), cast.node)
    return cdr, stored


def arrows(response) -> list[str]:
    """The arrow labels of a ladder page, in order."""
    return re.findall(r'<li id="msg-\d+"><strong>\d+\. ([^<]+)</strong>', response.content.decode())


def pcap_messages(response) -> list[pcap.Message]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(pcap.read(io.BytesIO(body)))


def test_a_finished_call_is_registered_with_the_file_sync_for_every_node(cast, settings, tmp_path):
    settings.CAPTURES_DIR = tmp_path / "captures"
    NodeFactory(name="node2")
    stored = services.save_capture(FinishedCall(CALL_ID, answered_call(CALL_ID), "ended"), cast.node)

    assert (stored.kind, stored.call_id, stored.origin) == (StoredFile.Kind.CAPTURE, CALL_ID, cast.node)
    assert re.fullmatch(r"node1/\d{4}/\d\d/\d\d/a-leg_test-\d+\.pcap", stored.relative_path)
    assert stored.size == (settings.CAPTURES_DIR / stored.relative_path).stat().st_size
    copies = dict(FileCopy.objects.filter(file=stored).values_list("node__name", "state"))
    assert copies == {"node1": "present", "node2": "pending"}


def test_the_operator_sees_every_leg_of_the_call_in_time_order(captured, cast, login):
    cdr, _ = captured
    response = login(cast.operator).get(reverse("capture:admin-ladder", args=[cdr.pk]))

    assert response.status_code == 200
    labels = arrows(response)
    assert len(labels) == 12
    assert labels[0] == "INVITE" and labels[2] == "180 Ringing (INVITE)" and labels[-1] == "200 OK (BYE)"
    assert "127.0.0.3:5070" in response.content.decode()  # the supplier's column


def test_reseller_staff_see_their_customers_leg_and_not_the_supplier(captured, cast, login):
    cdr, _ = captured
    response = login(cast.a.staff).get(reverse("capture:admin-ladder", args=[cdr.pk]))

    assert response.status_code == 200
    assert arrows(response) == [
        "INVITE",
        "180 Ringing (INVITE)",
        "200 OK (INVITE)",
        "ACK",
        "BYE",
        "200 OK (BYE)",
    ]
    assert "127.0.0.3" not in response.content.decode()


def test_another_reseller_gets_404_for_the_ladder_and_the_pcap(captured, cast, login):
    cdr, _ = captured
    client = login(cast.b.staff)

    assert client.get(reverse("capture:admin-ladder", args=[cdr.pk])).status_code == 404
    assert client.get(reverse("capture:admin-pcap", args=[cdr.pk])).status_code == 404


def test_the_customer_sees_its_own_leg_in_the_portal_and_downloads_only_that(captured, cast, login):
    cdr, _ = captured
    client = login(cast.a.customer_user)

    page = client.get(reverse("capture:portal-ladder", args=[cdr.pk]))
    download = client.get(reverse("capture:portal-pcap", args=[cdr.pk]))

    assert page.status_code == 200 and len(arrows(page)) == 6
    assert download.status_code == 200
    assert download["Content-Type"] == "application/vnd.tcpdump.pcap"
    messages = pcap_messages(download)
    assert len(messages) == 6
    assert all(CUSTOMER in ((m.src_ip, m.src_port), (m.dst_ip, m.dst_port)) for m in messages)


def test_another_customer_gets_404_in_the_portal(captured, cast, login):
    cdr, _ = captured
    client = login(cast.b.customer_user)

    assert client.get(reverse("capture:portal-ladder", args=[cdr.pk])).status_code == 404
    assert client.get(reverse("capture:portal-pcap", args=[cdr.pk])).status_code == 404


def test_the_operator_downloads_the_file_as_written(captured, cast, login, settings):
    cdr, stored = captured
    response = login(cast.operator).get(reverse("capture:admin-pcap", args=[cdr.pk]))

    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert body == (settings.CAPTURES_DIR / stored.relative_path).read_bytes()


def test_a_capture_not_copied_here_yet_is_a_409_saying_so(captured, cast, login, settings):
    cdr, stored = captured
    (settings.CAPTURES_DIR / stored.relative_path).unlink()
    client = login(cast.operator)

    page = client.get(reverse("capture:admin-ladder", args=[cdr.pk]))
    download = client.get(reverse("capture:admin-pcap", args=[cdr.pk]))

    assert page.status_code == 409 and "still being copied to this node from node1" in page.content.decode()
    assert download.status_code == 409


def test_a_call_without_capture_is_a_404(cast, login):
    cdr = CdrFactory(customer=cast.a.customer)

    response = login(cast.operator).get(reverse("capture:admin-ladder", args=[cdr.pk]))

    assert response.status_code == 404
    assert "No capture was made of this call." in response.content.decode()


def test_a_later_call_reusing_the_call_id_does_not_see_the_earlier_calls_capture(captured, cast, login):
    # The callee of the first call saw its Call-ID and places its own call with it, days later.
    cdr, _ = captured
    later = CdrFactory(
        customer=cast.b.customer,
        call_id=CALL_ID,
        node=cast.node,
        created_at=cdr.created_at + timedelta(days=3),
        ended_at=cdr.created_at + timedelta(days=3, minutes=1),
    )

    response = login(cast.b.customer_user).get(reverse("capture:portal-ladder", args=[later.pk]))

    assert response.status_code == 404


def test_a_call_written_in_two_parts_is_shown_and_downloaded_whole(captured, cast, login):
    cdr, _ = captured
    later = [
        p.__class__(**{**p.__dict__, "timestamp_us": p.timestamp_us + 10_000_000})
        for p in answered_call()[8:]
    ]
    services.save_capture(FinishedCall(CALL_ID, later, "ended"), cast.node)
    client = login(cast.operator)

    assert len(arrows(client.get(reverse("capture:admin-ladder", args=[cdr.pk])))) == 16
    assert len(pcap_messages(client.get(reverse("capture:admin-pcap", args=[cdr.pk])))) == 16


def test_a_customer_is_told_the_capture_is_on_its_way_without_node_names(captured, cast, login, settings):
    cdr, stored = captured
    (settings.CAPTURES_DIR / stored.relative_path).unlink()

    page = login(cast.a.customer_user).get(reverse("capture:portal-ladder", args=[cdr.pk]))

    assert page.status_code == 409
    assert "still being copied" in page.content.decode() and "node1" not in page.content.decode()
