"""Time-of-week prices: one prefix priced by period (weekend, offpeak) in one price list.

The index file chooses among a prefix's periods with the profiles in force; imports take a
`period` column and refuse an unknown one by its line; the time profiles themselves are the
operator's, read by every tenant. Moments are fixed calendar dates where the calendar is the
point (a Saturday), prices starting long before them.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from apps.core.errors import DomainError, NotAllowed
from apps.rates import lookup
from apps.rates import services as rate_services
from apps.rates.models import PriceImport, Rate, TimeProfile
from apps.rates.prefix_index import Period, PeriodIndex, PrefixIndex, open_index, write_index
from apps.rates.rows import RateRow
from apps.rates.services import activation, imports, time_profiles
from apps.rates.tariffs import Tariff
from apps.rates.time_windows import TimeProfiles
from apps.routing.models import RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from tests.factories import make_rate_table
from tests.rates.import_helpers import HEADER, at, deck, snapshot

SYSTEM = Scope.system()
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2020, 1, 1, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 6, 6, 10, 0, tzinfo=UTC)  # 12:00 in Berlin (summer time)
MONDAY_NOON = datetime(2026, 6, 8, 10, 0, tzinfo=UTC)
FRIDAY_LATE = datetime(2026, 6, 5, 22, 30, tzinfo=UTC)  # Friday in UTC, Saturday 00:30 in Berlin
PROFILES = TimeProfiles([(1, "weekend", "Sat-Sun"), (2, "offpeak", "Mon-Fri 19:00-08:00; Sat-Sun")])
PERIOD_HEADER = HEADER + ",period"
NEW_YEAR = at("2026-01-01T00:00:00")
JUNE = at("2026-06-01T00:00:00")


def period(price, *, name="", start=T0, end=None, destination="Germany"):
    return Period(Tariff(Decimal(price)), start, end, destination, name)


def build(tmp_path, items):
    write_index(tmp_path / "index.idx", items, version=1)
    return open_index(tmp_path / "index.idx")


def price(index, number, moment, zone=BERLIN):
    found = index.lookup(number, moment, PROFILES.at(moment, zone))
    return None if found is None else found.price


# --- the index --------------------------------------------------------------------------------


def test_a_weekend_price_applies_in_its_hours_and_the_price_of_any_time_otherwise(tmp_path):
    index = build(tmp_path, [("49", [period("0.0200"), period("0.0050", name="weekend")])])
    assert isinstance(index, PeriodIndex) and index.periods == ("", "weekend")
    assert price(index, "4930123456", SATURDAY_NOON) == Decimal("0.005")
    assert price(index, "4930123456", MONDAY_NOON) == Decimal("0.02")
    match = index.match("4930123456", SATURDAY_NOON, PROFILES.at(SATURDAY_NOON, BERLIN))
    assert (match.prefix, match.period, match.destination) == ("49", "weekend", "Germany")
    assert index.match("4930123456", MONDAY_NOON, PROFILES.at(MONDAY_NOON, BERLIN)).period == ""
    # Without the profiles in force only the price of any time is found.
    assert index.lookup("4930123456", SATURDAY_NOON).price == Decimal("0.02")


def test_the_most_specific_period_in_force_wins(tmp_path):
    index = build(
        tmp_path,
        [("49", [period("0.0200"), period("0.0100", name="offpeak"), period("0.0050", name="weekend")])],
    )
    tuesday_night = datetime(2026, 6, 9, 21, 0, tzinfo=UTC)  # 23:00 in Berlin
    assert price(index, "49301", tuesday_night) == Decimal("0.01")
    assert price(index, "49301", SATURDAY_NOON) == Decimal("0.005")  # weekend is narrower than offpeak
    assert price(index, "49301", MONDAY_NOON) == Decimal("0.02")


def test_a_prefix_priced_only_at_the_weekend_falls_back_to_a_shorter_one_on_weekdays(tmp_path):
    index = build(
        tmp_path,
        [("49", [period("0.0200")]), ("4930", [period("0.0040", name="weekend", destination="Berlin")])],
    )
    assert index.match("4930123", SATURDAY_NOON, PROFILES.at(SATURDAY_NOON, BERLIN)).prefix == "4930"
    assert index.match("4930123", MONDAY_NOON, PROFILES.at(MONDAY_NOON, BERLIN)).prefix == "49"


def test_the_weekend_is_read_on_the_clock_of_the_zone_given(tmp_path):
    index = build(tmp_path, [("49", [period("0.0200"), period("0.0050", name="weekend")])])
    assert price(index, "49301", FRIDAY_LATE, BERLIN) == Decimal("0.005")
    assert price(index, "49301", FRIDAY_LATE, ZoneInfo("UTC")) == Decimal("0.02")


def test_each_period_keeps_its_own_dates(tmp_path):
    change = datetime(2026, 6, 1, tzinfo=UTC)
    index = build(
        tmp_path,
        [
            (
                "49",
                [
                    period("0.0200"),
                    period("0.0060", name="weekend", end=change),
                    period("0.0050", name="weekend", start=change),
                ],
            )
        ],
    )
    assert price(index, "49301", SATURDAY_NOON) == Decimal("0.005")
    assert price(index, "49301", SATURDAY_NOON - timedelta(days=7)) == Decimal("0.006")


def test_a_table_without_periods_opens_as_before_and_ignores_the_clock(tmp_path):
    index = build(tmp_path, [("49", [period("0.0200")])])
    assert type(index) is PrefixIndex and not index.has_periods
    assert index.lookup("4930", SATURDAY_NOON, PROFILES.at(SATURDAY_NOON, BERLIN)).price == Decimal("0.02")
    assert index.match("4930", SATURDAY_NOON).period == ""


# --- looked up from the database ------------------------------------------------------------


@pytest.fixture
def weekend(db):
    return time_profiles.create_time_profile(actor=SYSTEM, name="weekend", windows="Sat-Sun")


def test_rate_for_reads_the_period_on_the_zone_given(weekend):
    table = make_rate_table("Retail")
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.02"), effective_from=T0)
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.005"), effective_from=T0, period="weekend")
    assert lookup.rate_for(table, "4930", FRIDAY_LATE, zone=BERLIN).tariff.price == Decimal("0.005")
    assert lookup.rate_for(table, "4930", FRIDAY_LATE, zone=ZoneInfo("UTC")).tariff.price == Decimal("0.02")
    assert lookup.rate_for(table, "4930", SATURDAY_NOON).period == "weekend"  # TIME_ZONE (UTC) by default


def test_a_profiles_new_hours_apply_without_rebuilding_the_index(weekend):
    table = make_rate_table("Retail")
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.02"), effective_from=T0)
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.005"), effective_from=T0, period="weekend")
    assert lookup.rate_for(table, "4930", MONDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.02")
    time_profiles.update_time_profile(weekend, actor=SYSTEM, changes={"windows": "Sat-Mon"})
    lookup.forget_time_profiles()  # as RECHECK_SECONDS passing does
    assert lookup.rate_for(table, "4930", MONDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.005")


def test_an_index_file_of_the_former_format_is_rebuilt(weekend):
    table = make_rate_table("Retail")
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.02"), effective_from=T0)
    path = lookup.index_path(table.pk, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"SSPFXIDX" + (1).to_bytes(4, "little") + bytes(500))  # format 1's header
    assert lookup.rate_for(table, "4930", MONDAY_NOON).tariff.price == Decimal("0.02")
    assert lookup.is_current_format(path)


# --- imports ---------------------------------------------------------------------------------


def load(table, *rows, mode="full", start=NEW_YEAR, header=PERIOD_HEADER, **options):
    return activation.import_price_file(
        table, deck(*rows, header=header), actor=SYSTEM, mode=mode, effective_from=start, **options
    )


def test_an_import_with_a_period_column_prices_one_prefix_by_time_of_week(weekend):
    time_profiles.create_time_profile(actor=SYSTEM, name="offpeak", windows="Mon-Fri 19:00-08:00")
    table = make_rate_table("Retail")
    report = load(
        table,
        "49,Germany,0.0200,0,1,1,0,,,",
        "49,Germany,0.0050,0,1,1,0,,,Weekend",  # names are read without regard to case
        "49,Germany,0.0100,0,1,1,0,,,offpeak",
        "4930,Berlin,0.0150,0,1,1,0,,,",
    )
    assert report.ok, report.errors
    assert report.diff["counts"]["new"] == 4
    rows = sorted(Rate.objects.live().filter(table=table).values_list("prefix", "period", "price"))
    assert rows == [
        ("49", "", Decimal("0.02")),
        ("49", "offpeak", Decimal("0.01")),
        ("49", "weekend", Decimal("0.005")),
        ("4930", "", Decimal("0.015")),
    ]
    assert lookup.rate_for(table, "4915112345", SATURDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.005")
    assert lookup.rate_for(table, "4915112345", MONDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.02")


def test_a_bad_period_is_reported_with_its_line_and_nothing_is_imported(weekend):
    table = make_rate_table("Retail")
    assert load(table, "49,Germany,0.0200,0,1,1,0,,,").ok
    before = snapshot(table)
    report = load(
        table,
        "49,Germany,0.0250,0,1,1,0,,,",
        "33,France,0.0300,0,1,1,0,,,weekend",
        "44,UK,0.0100,0,1,1,0,,,weeknd",
    )
    assert not report.ok
    assert report.errors == [
        {
            "line": 4,
            "message": "line 4: period 'weeknd' is not a time profile (known: weekend; leave it empty "
            "for any time)",
        }
    ]
    assert PriceImport.objects.latest("pk").state == PriceImport.State.INVALID
    assert snapshot(table) == before


def test_a_prefix_with_and_without_a_period_is_two_lines_but_the_same_line_twice_is_refused(weekend):
    table = make_rate_table("Retail")
    report = load(
        table,
        "49,Germany,0.0200,0,1,1,0,,,",
        "49,Germany,0.0050,0,1,1,0,,,weekend",
        "49,Germany,0.0060,0,1,1,0,,,weekend",
    )
    assert [error["message"] for error in report.errors] == [
        "line 4: prefix 49 (weekend) appears again with a different price "
        "(rate '0.0060', line 3 has '0.0050')"
    ]


def test_a_full_list_closes_a_period_it_no_longer_lists_and_keeps_the_rest(weekend):
    table = make_rate_table("Retail")
    assert load(table, "49,Germany,0.0200,0,1,1,0,,,", "49,Germany,0.0050,0,1,1,0,,,weekend").ok
    report = load(table, "49,Germany,0.0200,0,1,1,0,,,", start=JUNE)
    assert report.diff["counts"]["closed"] == 1 and report.diff["counts"]["unchanged"] == 1
    assert report.diff["samples"]["closed"][0]["period"] == "weekend"
    assert lookup.rate_for(table, "4930", SATURDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.02")
    # The weekend price of before the change is history, still found for a call made then.
    saturday_in_may = datetime(2026, 5, 30, 10, 0, tzinfo=UTC)
    assert lookup.rate_for(table, "4930", saturday_in_may, zone=BERLIN).tariff.price == Decimal("0.005")


def test_changing_only_the_weekend_price_leaves_the_price_of_any_time(weekend):
    table = make_rate_table("Retail")
    assert load(table, "49,Germany,0.0200,0,1,1,0,,,", "49,Germany,0.0050,0,1,1,0,,,weekend").ok
    report = load(table, "49,Germany,0.0040,0,1,1,0,,,weekend", mode="changes", start=JUNE)
    assert report.diff["counts"]["decreased"] == 1 and report.diff["counts"]["closed"] == 0
    assert report.diff["samples"]["decreased"][0]["period"] == "weekend"
    assert lookup.rate_for(table, "4930", SATURDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.004")
    assert lookup.rate_for(table, "4930", MONDAY_NOON, zone=BERLIN).tariff.price == Decimal("0.02")


def test_a_template_maps_a_suppliers_time_band_column_to_the_period(weekend):
    table = make_rate_table("Carrier buy", purpose="buy")
    template = rate_services.create_import_template(
        actor=SYSTEM, name="Carrier", columns={"Code": "prefix", "Price": "rate", "Time band": "period"}
    )
    price_import = imports.stage_price_file(
        table, b"Code,Price,Time band\n49,0.01,\n49,0.004,WEEKEND\n", actor=SYSTEM, template=template
    )
    assert price_import.state == PriceImport.State.STAGED, price_import.report["errors"]
    activation.activate_price_import(price_import, actor=SYSTEM)
    assert set(Rate.objects.live().filter(table=table).values_list("period", "price")) == {
        ("", Decimal("0.01")),
        ("weekend", Decimal("0.004")),
    }


def test_generated_rows_carry_their_period_and_an_unknown_one_is_refused(weekend):
    table = make_rate_table("Retail")
    report = activation.import_rows(
        table,
        [RateRow("49", Decimal("0.02")), RateRow("49", Decimal("0.005"), period="weekend")],
        mode="full",
        effective_from=T0,
        actor=SYSTEM,
    )
    assert report.ok
    refused = activation.import_rows(
        table,
        [RateRow("49", Decimal("0.005"), period="night")],
        mode="changes",
        effective_from=T0,
        actor=SYSTEM,
    )
    assert [error["line"] for error in refused.errors] == [1]


def test_single_rates_name_a_known_period_or_are_refused(weekend):
    table = make_rate_table("Retail")
    rate_services.add_rates(
        table,
        [
            Rate(prefix="49", price=Decimal("0.02"), effective_from=T0),
            Rate(prefix="49", price=Decimal("0.005"), effective_from=T0, period="weekend"),
        ],
        actor=SYSTEM,
    )
    assert Rate.objects.filter(table=table).count() == 2
    with pytest.raises(ValidationError, match="no time profile is named night"):
        rate_services.add_rates(
            table, [Rate(prefix="33", price=Decimal("0.02"), effective_from=T0, period="night")], actor=SYSTEM
        )


# --- the profiles themselves ---------------------------------------------------------------------


def test_a_profiles_name_is_fixed_and_its_windows_must_read(weekend):
    with pytest.raises(DomainError, match="name is fixed"):
        time_profiles.update_time_profile(weekend, actor=SYSTEM, changes={"name": "weekends"})
    with pytest.raises(ValidationError, match="is not a day"):
        time_profiles.update_time_profile(weekend, actor=SYSTEM, changes={"windows": "Saturdays"})
    assert TimeProfile.objects.get(pk=weekend.pk).windows == "Sat-Sun"


def test_a_profile_in_use_by_a_rate_or_a_rule_is_not_deleted(weekend):
    table = make_rate_table("Retail")
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.005"), effective_from=T0, period="weekend")
    with pytest.raises(DomainError, match="rates of price lists"):
        time_profiles.delete_time_profile(weekend, actor=SYSTEM)
    night = time_profiles.create_time_profile(actor=SYSTEM, name="night", windows="daily 22:00-06:00")
    plan = RoutingPlan.objects.create(name="Main")
    RoutingRule.objects.create(plan=plan, prefix="49", time_profile=night)
    with pytest.raises(DomainError, match="1 routing rule"):
        time_profiles.delete_time_profile(night, actor=SYSTEM)
    spare = time_profiles.create_time_profile(actor=SYSTEM, name="spare", windows="Mon")
    time_profiles.delete_time_profile(spare, actor=SYSTEM)
    assert not TimeProfile.objects.filter(name="spare").exists()


def test_only_the_operator_writes_profiles_and_every_tenant_reads_them(api, cast, weekend):
    with pytest.raises(NotAllowed):
        time_profiles.create_time_profile(actor=Scope.of_user(cast.a.staff), name="night", windows="daily")
    for key in (cast.operator_key, cast.a.staff_key, cast.a.customer_key):
        body = api(key).get("/api/v1/time-profiles/").json()
        assert [(row["name"], row["windows"]) for row in body["results"]] == [("weekend", "Sat-Sun")]
    refused = api(cast.a.staff_key).post("/api/v1/time-profiles/", {"name": "night", "windows": "daily"})
    assert refused.status_code == 403
    created = api(cast.operator_key).post(
        "/api/v1/time-profiles/", {"name": "night", "windows": "daily 22:00-06:00"}, format="json"
    )
    assert created.status_code == 201, created.json()
    bad = api(cast.operator_key).post(
        "/api/v1/time-profiles/", {"name": "x", "windows": "nights"}, format="json"
    )
    assert bad.status_code == 400 and "windows" in bad.json()


def test_the_rates_api_shows_and_filters_by_period(api, cast, weekend):
    table = cast.operator_customer.sell_rate_table
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.02"), effective_from=T0)
    Rate.objects.create(table=table, prefix="49", price=Decimal("0.005"), effective_from=T0, period="weekend")
    body = api(cast.operator_key).get("/api/v1/rates/", {"table": table.pk, "period": "weekend"}).json()
    assert [(row["prefix"], row["period"], row["price"]) for row in body["results"]] == [
        ("49", "weekend", "0.005000")
    ]


def test_a_change_of_the_weekend_price_announced_in_the_list_ends_the_earlier_weekend_row(weekend):
    table = make_rate_table("Retail")
    report = load(
        table,
        "49,Germany,0.0200,0,1,1,0,,,",
        "49,Germany,0.0050,0,1,1,0,,,weekend",
        "49,Germany,0.0040,0,1,1,0,2026-06-01T00:00:00,,weekend",
    )
    assert report.ok, report.errors
    assert report.diff["counts"]["scheduled"] == 1
    rows = sorted(
        Rate.objects.live()
        .filter(table=table)
        .values_list("period", "price", "effective_from", "effective_to")
    )
    assert rows == [
        ("", Decimal("0.02"), NEW_YEAR, None),
        ("weekend", Decimal("0.004"), JUNE, None),
        ("weekend", Decimal("0.005"), NEW_YEAR, JUNE),
    ]
