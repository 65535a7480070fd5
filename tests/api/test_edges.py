"""The API's edges: query-string integers, page size, JSON nesting, unknown paths and database
range errors are 400s and 404s that say what is wrong, in JSON, never 500s."""

import decimal
import io
import json

import jsonschema
import pytest
from django.conf import settings
from django.db import DataError, connection, transaction
from django_filters import filters as django_filters
from rest_framework.exceptions import ParseError

from apps.billing.models import Account
from apps.core.api import (
    MAX_JSON_DEPTH,
    BooleanFilter,
    FilterSet,
    IdFilter,
    IntegerFilter,
    JSONParser,
    exception_handler,
)
from apps.peers.models import Peer
from smartswitch.api_urls import router
from tests.api.conftest import committed_schema

BEYOND_64_BITS = "9223372036854775808"
PEERS = "/api/v1/peers/"


def errors(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


# --- Page size and query-string integers ------------------------------------------------------


def test_a_limit_beyond_64_bits_is_a_400_naming_limit(api, cast):
    assert "limit" in errors(api(cast.operator_key).get(f"{PEERS}?limit={BEYOND_64_BITS}"))


def test_a_page_holds_at_most_the_maximum_page_size(api, cast, settings):
    settings.API_MAX_PAGE_SIZE = 2
    client = api(cast.operator_key)
    page = client.get(f"{PEERS}?limit=2").json()
    assert (page["count"], len(page["results"])) == (4, 2)
    body = errors(client.get(f"{PEERS}?limit=3"))
    assert body == {"limit": ["Ensure this value is less than or equal to 2."]}


def test_the_maximum_page_size_is_1000_by_default(api, cast):
    assert settings.API_MAX_PAGE_SIZE == 1000
    client = api(cast.operator_key)
    assert client.get(f"{PEERS}?limit=1000").status_code == 200
    assert "limit" in errors(client.get(f"{PEERS}?limit=100000"))


def test_the_schema_documents_the_maximum_page_size():
    parameters = committed_schema()["paths"][PEERS]["get"]["parameters"]
    limit = next(p for p in parameters if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "-1"),
        ("limit", "ten"),
        ("limit", "1" * 5000),
        ("offset", "-1"),
        ("offset", "1.5"),
        ("offset", BEYOND_64_BITS),
    ],
)
def test_limit_and_offset_outside_their_range_are_400s_naming_them(api, cast, name, value):
    assert name in errors(api(cast.operator_key).get(PEERS, {name: value}))


def test_an_empty_query_parameter_means_not_given(api, cast):
    page = api(cast.operator_key).get(PEERS, {"limit": "", "offset": "", "reseller": "", "ordering": ""})
    assert (page.status_code, page.json()["count"], len(page.json()["results"])) == (200, 4, 4)
    parameters = committed_schema()["paths"][PEERS]["get"]["parameters"]
    assert all(p["allowEmptyValue"] for p in parameters if p["in"] == "query")


def test_an_offset_past_the_end_is_an_empty_page(api, cast):
    page = api(cast.operator_key).get(f"{PEERS}?offset=9223372036854775807").json()
    assert (page["count"], page["results"]) == (4, [])


def _integer_query_parameters():
    schema = committed_schema()
    for path, operations in schema["paths"].items():
        if "get" not in operations or "{" in path or not path.startswith("/api/"):
            continue
        for parameter in operations["get"].get("parameters", []):
            if parameter["in"] == "query" and parameter["schema"].get("type") == "integer":
                yield path, parameter


INTEGER_PARAMETERS = list(_integer_query_parameters())


def test_every_list_has_integer_query_parameters_to_check():
    assert {name for _, name in ((p, q["name"]) for p, q in INTEGER_PARAMETERS)} >= {
        "limit",
        "offset",
        "peer",
        "sip_code",
        "reseller",
        "account",
        "node",
    }


@pytest.mark.parametrize(
    ("path", "parameter"), INTEGER_PARAMETERS, ids=[f"{p}?{q['name']}" for p, q in INTEGER_PARAMETERS]
)
def test_every_integer_query_parameter_is_bounded_and_documented(api, cast, path, parameter):
    name = parameter["name"]
    assert {"minimum", "maximum"} <= parameter["schema"].keys(), f"{path}?{name} has no documented range"
    client = api(cast.operator_key)
    for value in (BEYOND_64_BITS, str(parameter["schema"]["maximum"] + 1), "1.5", "1e3"):
        assert name in errors(client.get(path, {name: value})), (path, name, value)


def test_an_integer_filter_takes_whole_numbers_within_the_columns_range(api, cast):
    client = api(cast.operator_key)
    assert errors(client.get("/api/v1/cdrs/", {"sip_code": "1.5"})) == {"sip_code": ["Enter a whole number."]}
    assert client.get("/api/v1/cdrs/", {"sip_code": "486"}).status_code == 200


UNBOUNDED = {
    django_filters.NumberFilter: IntegerFilter,
    django_filters.ModelChoiceFilter: IdFilter,
    django_filters.ModelMultipleChoiceFilter: None,
    django_filters.BooleanFilter: BooleanFilter,
}


def test_every_filterset_is_built_on_the_bounded_one(rf, cast):
    from apps.core.api import FilterBackend

    for _prefix, viewset, _basename in router.registry:
        view = viewset(request=rf.get("/"), format_kwarg=None, action="list", kwargs={})
        filterset = FilterBackend().get_filterset_class(view, viewset.queryset)
        if filterset is None:
            continue
        assert issubclass(filterset, FilterSet), viewset
        for name, declared in filterset.base_filters.items():
            for loose, bounded in UNBOUNDED.items():
                if isinstance(declared, loose):
                    assert bounded and isinstance(declared, bounded), f"{viewset.__name__}.{name}"


@pytest.mark.parametrize("value", ["maybe", "-1", "null", "yes"])
def test_a_boolean_filter_refuses_what_is_neither_true_nor_false(api, cast, value):
    body = errors(api(cast.operator_key).get(PEERS, {"suspended": value, "enabled": "true"}))
    assert body == {"suspended": ["Give true or false."]}


def test_a_boolean_filter_takes_true_false_1_and_0(api, cast):
    client = api(cast.operator_key)
    assert client.get(PEERS, {"enabled": "TRUE"}).json()["count"] == 4
    assert client.get(PEERS, {"enabled": "0"}).json()["count"] == 0
    assert client.get(PEERS, {"enabled": ""}).json()["count"] == 4


# --- JSON bodies ------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_body_nested_4000_deep_is_a_400_not_a_recursion_error(api, cast):
    response = api(cast.operator_key).post(PEERS, data="[" * 4000, content_type="application/json")
    assert errors(response) == {"detail": f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."}


def test_nesting_up_to_the_limit_is_parsed_and_one_more_is_refused():
    parser = JSONParser()
    assert parser.parse(io.BytesIO(nested(MAX_JSON_DEPTH).encode())) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(ParseError, match="nested deeper"):
        parser.parse(io.BytesIO(nested(MAX_JSON_DEPTH + 1).encode()))


def test_brackets_inside_strings_are_not_nesting(api, cast):
    # 40 brackets either side of an escaped quote: counted, they would be too deep.
    name = "[" * 40 + '"' + "{" * 40
    response = api(cast.operator_key).post(PEERS, {"name": name, "role": "customer"}, format="json")
    assert response.status_code == 201, response.content
    assert Peer.objects.get(pk=response.json()["id"]).name == name


def test_a_body_that_is_not_json_is_still_a_parse_error(api, cast):
    response = api(cast.operator_key).post(PEERS, data='{"name": "x"', content_type="application/json")
    assert errors(response)["detail"].startswith("JSON parse error")


def test_forms_are_still_accepted(api, cast):
    response = api(cast.operator_key).post(PEERS, {"name": "Form Co", "role": "customer"})
    assert response.status_code == 201, response.content


# --- Unknown paths and methods ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accounts/0.5/payments/",
        "/api/v1/nope/",
        "/api/v1/peers/1/nope/",
        "/api/v2/peers/",
        "/api/",
        "/call-control/v1/nope",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_unknown_paths_under_the_api_answer_json_404(api, cast, settings, path, method, debug):
    # DEBUG is `make run`'s default, where Django would answer its technical HTML page.
    settings.DEBUG = debug
    response = getattr(api(cast.operator_key), method)(path)
    assert errors(response, 404) == {"detail": "Not found."}


def test_a_missing_trailing_slash_is_still_redirected(api, cast):
    response = api(cast.operator_key).get("/api/v1/peers")
    assert (response.status_code, response["Location"]) == (301, "/api/v1/peers/")


def test_a_missing_object_is_a_json_404(api, cast):
    assert errors(api(cast.operator_key).get(f"{PEERS}{BEYOND_64_BITS}/"), 404)


@pytest.mark.parametrize(
    ("method", "path"), [("delete", PEERS), ("put", f"{PEERS}1/"), ("get", "/api/v1/accounts/1/payments/")]
)
def test_a_method_a_path_does_not_take_is_a_json_405(api, cast, method, path):
    assert "detail" in errors(getattr(api(cast.operator_key), method)(path), 405)


def test_a_path_without_its_slash_is_still_redirected(api, cast):
    response = api(cast.operator_key).get("/api/v1/peers")
    assert (response.status_code, response["Location"]) == (301, PEERS)


def test_paths_outside_the_api_keep_their_html_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- The schema --------------------------------------------------------------


def test_every_api_operation_documents_the_errors_it_can_answer():
    schema = committed_schema()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            codes = set(operation["responses"])
            expected = {"401", "403"} | ({"404"} if "{" in path else set())
            if method != "get" or "limit" in {p["name"] for p in operation.get("parameters", [])}:
                expected.add("400")
            assert expected <= codes, (method, path, sorted(codes))


def _validator(component_or_schema: dict) -> jsonschema.Draft7Validator:
    from tests.api.test_schema import _json_schema

    components = _json_schema(committed_schema()["components"]["schemas"])
    schema = {**_json_schema(component_or_schema), "components": {"schemas": components}}
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(
    "path", ["/api/v1/accounts/{id}/payments/", "/api/v1/accounts/{id}/adjustments/", PEERS]
)
def test_a_body_that_is_not_json_is_answered_as_documented(api, cast, path):
    documented = committed_schema()["paths"][path]["post"]["responses"]["400"]
    url = path.format(id=cast.a.customer.account.pk)
    response = api(cast.operator_key).post(url, data='{"amount', content_type="application/json")
    body = errors(response)
    assert not list(_validator(documented["content"]["application/json"]["schema"]).iter_errors(body))


def test_a_refusal_naming_its_field_is_answered_as_documented(api, cast):
    account = cast.a.customer.account
    refund = {"amount": "1.00", "reference": "r-1", "allow_over_refund": True}
    response = api(cast.a.staff_key).post(f"/api/v1/accounts/{account.pk}/refunds/", refund, format="json")
    assert errors(response, 403) == {"allow_over_refund": ["Only the operator refunds more than was paid."]}
    for path, method in [("/api/v1/accounts/{id}/refunds/", "post"), ("/api/v1/peers/{id}/", "patch")]:
        documented = committed_schema()["paths"][path][method]["responses"]["403"]
        validator = _validator(documented["content"]["application/json"]["schema"])
        assert not list(validator.iter_errors(response.json())), path
        assert not list(validator.iter_errors({"detail": "You do not have permission."})), path


def test_a_blank_email_address_matches_the_schema(api, cast):
    account = api(cast.operator_key).get(f"/api/v1/accounts/{cast.a.customer.account.pk}/").json()
    assert account["notification_email"] == ""
    assert not list(_validator({"$ref": "#/components/schemas/Account"}).iter_errors(account))
    assert not jsonschema.Draft7Validator.FORMAT_CHECKER.conforms("", "email")


def test_swagger_ui_offers_the_api_key_first(api, db):
    served = api().get("/api/v1/schema/?format=json")
    assert served.status_code == 200
    for schemes in (
        json.loads(served.content)["components"]["securitySchemes"],
        committed_schema()["components"]["securitySchemes"],
    ):
        assert next(iter(schemes)) == "ApiKey", list(schemes)
        assert schemes["ApiKey"]["description"].startswith("An API key")


# --- Database range errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "body"),
    [
        (
            DataError(1264, "Out of range value for column 'balance' at row 1"),
            {"balance": ["This value is out of the range the database can store."]},
        ),
        (
            DataError(1264, "Out of range value for column 'peer_id' at row 1"),
            {"peer": ["This value is out of the range the database can store."]},
        ),
        (
            DataError(1406, "Data too long for column 'reference' at row 1"),
            {"reference": ["This value is longer than the database can store."]},
        ),
        (
            DataError("numeric field overflow\nDETAIL:  A field with precision 18, scale 6 must round"),
            {"non_field_errors": ["A value is out of the range the database can store."]},
        ),
        (
            decimal.InvalidOperation([decimal.InvalidOperation]),
            {"non_field_errors": ["A value is out of the range the database can store."]},
        ),
    ],
)
def test_a_database_range_error_is_a_400(exc, body):
    response = exception_handler(exc, {})
    assert (response.status_code, response.data) == (400, body)


@pytest.mark.django_db(transaction=True)
def test_a_range_error_from_the_database_itself_is_a_400(cast):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite stores any number in any column: the range error needs MariaDB or PostgreSQL")
    account = Account.objects.get(peer=cast.a.customer)
    with pytest.raises(DataError) as raised, transaction.atomic():
        Account.objects.filter(pk=account.pk).update(balance=decimal.Decimal("1e20"))
    response = exception_handler(raised.value, {})
    assert response.status_code == 400
    expected = "balance" if connection.vendor == "mysql" else "non_field_errors"
    assert list(response.data) == [expected]
