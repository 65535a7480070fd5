"""Routing rules with a window (a time profile): set through the services, the API and the admin,
and announced to call control, also when the profile's hours change."""

import pytest

from apps.core import changes
from apps.rates.services import time_profiles
from apps.routing import services
from apps.routing.models import RoutingRule
from tests.conftest import PASSWORD
from tests.routing.conftest import SYSTEM


@pytest.fixture
def night(db):
    return time_profiles.create_time_profile(actor=SYSTEM, name="night", windows="daily 22:00-06:00")


def test_a_rule_gets_a_window_through_the_services(routing, night):
    rule = services.add_rule(routing.plan, actor=SYSTEM, prefix="49", time_profile_id=night.pk)
    assert str(rule) == "49 [night]: Least cost"
    services.update_rule(rule, actor=SYSTEM, changes={"time_profile_id": None})
    assert RoutingRule.objects.get(pk=rule.pk).time_profile is None


def test_the_operator_sets_and_filters_windows_through_the_api(api, cast, routing, night):
    client = api(cast.operator_key)
    created = client.post(
        "/api/v1/routing-rules/",
        {"plan": routing.plan.pk, "prefix": "49", "time_profile": night.pk, "method": "lcr"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["time_profile"] == night.pk
    listed = client.get("/api/v1/routing-rules/", {"time_profile": night.pk}).json()["results"]
    assert [row["id"] for row in listed] == [created.json()["id"]]
    unknown = client.post(
        "/api/v1/routing-rules/", {"plan": routing.plan.pk, "time_profile": 999999}, format="json"
    )
    assert unknown.status_code == 400 and "time_profile" in unknown.json()


def test_the_plan_page_offers_the_windows(client, cast, routing, night):
    client.login(username="operator", password=PASSWORD)
    page = client.get(f"/admin/routing/routingplan/{routing.plan.pk}/change/").content.decode()
    assert "night (daily 22:00-06:00)" in page
    rules = client.get("/admin/routing/routingrule/").content.decode()
    assert "window" in rules


def test_new_hours_of_a_profile_are_announced_as_a_change_of_the_rules_using_it(routing, night, monkeypatch):
    rule = services.add_rule(routing.plan, actor=SYSTEM, prefix="49", time_profile_id=night.pk)
    announced = []
    monkeypatch.setattr(changes, "announce", lambda kind, ids=(), **kw: announced.append((kind, set(ids))))
    monkeypatch.setattr(time_profiles, "announce", changes.announce)
    time_profiles.update_time_profile(night, actor=SYSTEM, changes={"windows": "daily 23:00-05:00"})
    assert announced == [("rates.TimeProfile", {night.pk}), ("routing.RoutingRule", {rule.pk})]
