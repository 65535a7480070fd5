"""Check routing (command and admin page) runs the decision calls get, and explains it."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.billing.models import Reservation
from apps.callcontrol.endpoint import handle
from apps.peers import services as peer_services
from tests.conftest import PASSWORD
from tests.switching import BERLIN, CALLER, CUSTOMER_IP, SYSTEM, update_peer


def check(*args, **options) -> str:
    out = StringIO()
    call_command("check_routing", *args, stdout=out, **options)
    return out.getvalue()


def test_check_routing_agrees_with_the_answer_a_call_gets(world):
    checked = json.loads(
        check(source_ip=CUSTOMER_IP, callee=BERLIN, caller=CALLER, node="node1", call_id="c-1", json=True)
    )
    assert not Reservation.objects.exists()  # only looked at the money

    body = {"call_id": "c-1", "node": "node1", "source_ip": CUSTOMER_IP, "caller": CALLER, "callee": BERLIN}
    status, answered = handle(
        "authorize", json.dumps(body).encode(), f"Bearer {world.node.call_control_secret}"
    )

    assert status == 200
    assert answered["reservation"] == Reservation.objects.get().pk
    assert checked["reservation"] is None
    for key in ("action", "code", "max_duration", "caller", "callee", "destination", "routes", "limits"):
        assert checked[key] == answered[key], key
    # Germany 49: Bravo and Delta buy at 0.0080 (Bravo first by priority), Alpha 0.0100, Charlie 0.0120.
    assert [route["supplier_id"] for route in checked["routes"]] == [
        world.suppliers[name].pk for name in ("Bravo", "Delta", "Alpha", "Charlie")
    ]
    assert checked["max_duration"] == 7200  # 10.00 USD at 0.02/min lasts longer than the ceiling
    assert [step["step"] for step in checked["steps"]] == [
        "identify",
        "status",
        "node",
        "rewrite",
        "blocklists",
        "sell rate",
        "routing",
        "routes",
        "money",
    ]


def test_the_report_shows_every_candidate_with_its_price_and_why_it_is_out(world):
    update_peer(world.suppliers["Alpha"], enabled=False)
    peer_services.suspend_peer(world.suppliers["Charlie"], actor=SYSTEM, reason="unpaid invoice")

    report = check(peer=str(world.customer.pk), callee=BERLIN)

    lines = report.splitlines()
    assert "ok  identify    Acme" in report
    assert "sell rate   49 Germany: 0.020000/min USD" in report
    candidates = {line.split()[0]: line for line in lines if line.startswith("  ") and "USD" in line}
    assert candidates["Bravo"].rstrip().endswith("#1")
    assert candidates["Delta"].rstrip().endswith("#2")
    assert "supplier disabled" in candidates["Alpha"]
    assert "supplier suspended: unpaid invoice" in candidates["Charlie"]
    assert "0.010000 USD" in candidates["Alpha"]  # priced before being left out
    assert lines[-1].startswith("Answer: route, max duration 7200 s")


def test_a_rejected_call_says_which_step_refused_it(world):
    report = check(peer="Acme", callee="999123")

    assert "NO  sell rate   No rate for 999123" in report
    assert report.splitlines()[-1] == "Answer: reject 404 No rate for 999123"


def test_prices_are_those_in_force_at_the_time_asked(world):
    before_the_list = (timezone.now() - timedelta(days=3)).isoformat()

    report = check(peer="Acme", callee=BERLIN, at=before_the_list)

    assert report.splitlines()[-1] == f"Answer: reject 404 No rate for {BERLIN}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"peer": "Nobody", "callee": BERLIN}, "No customer peer named 'Nobody'"),
        ({"peer": "424242", "callee": BERLIN}, "No customer peer #424242"),
        ({"peer": "Acme", "callee": BERLIN, "node": "node9"}, "No node named 'node9'"),
        ({"peer": "Acme", "callee": BERLIN, "at": "yesterday"}, "is not an ISO date"),
        ({"callee": BERLIN}, "Name the peer, its source IP or its SIP user"),
    ],
)
def test_bad_inputs_are_named(world, options, message):
    with pytest.raises(CommandError, match=message):
        check(**options)


def test_the_admin_page_shows_the_same_decision_to_the_operator(world, django_user_model):
    django_user_model.objects.create_superuser("op", "op@example.com", PASSWORD)
    client = Client()
    client.login(username="op", password=PASSWORD)

    page = client.get(
        "/admin/check-routing/", {"peer": world.customer.pk, "callee": BERLIN, "node": world.node.pk}
    )

    assert page.status_code == 200
    text = page.content.decode()
    assert "<strong>Route</strong>: maximum duration 7200 s" in text
    assert text.index("Bravo") < text.index("Delta") < text.index("Charlie")
    assert "\n".join(page.context["report"].splitlines()[2:]) in "\n".join(
        check(peer=str(world.customer.pk), callee=BERLIN, node="node1").splitlines()[2:]
    )
    assert not Reservation.objects.exists()


def test_the_admin_page_is_the_operators_only(world, cast):
    client = Client()
    assert client.get("/admin/check-routing/").status_code == 302  # to the login page
    client.login(username="staff_a", password=PASSWORD)
    assert (
        client.get("/admin/check-routing/", {"peer": cast.a.customer.pk, "callee": BERLIN}).status_code == 403
    )
