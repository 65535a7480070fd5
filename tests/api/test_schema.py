"""The OpenAPI schema is generated without warnings, valid, committed, and served with its UI."""

from pathlib import Path

import jsonschema
import pytest
from django.conf import settings
from django.core.management import call_command

from tests.api.conftest import committed_schema, load_yaml
from tests.factories import CdrFactory

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
REGENERATE = (
    "make schema (that is: .venv/bin/python manage.py spectacular --validate --fail-on-warn "
    "--file docs/openapi.yaml)"
)


def test_the_schema_validates_and_matches_the_committed_one(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))
    assert generated.read_text() == COMMITTED.read_text(), (
        f"docs/openapi.yaml is out of date with the API; regenerate it with: {REGENERATE}"
    )


def test_the_schema_is_served(api, db):
    response = api().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    schema = load_yaml(response.content)
    assert schema["info"]["title"] == "Smartswitch API"
    assert "/api/v1/peers/{id}/suspend/" in schema["paths"]


def test_the_ui_loads_its_assets_from_this_server(api, db):
    response = api().get("/api/v1/schema/ui/")
    assert response.status_code == 200
    page = response.content.decode()
    prefix = "/static/drf_spectacular_sidecar/swagger-ui-dist/"
    assert f"{prefix}swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert "https://" not in page
    for asset in (
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    ):
        served = api().get(f"{prefix}{asset}")
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content)


def _json_schema(node):
    """OpenAPI 3.0 `nullable` as JSON Schema understands it, refs left as they are."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.mark.parametrize(("key", "component"), [("operator_key", "OperatorCdr"), ("a.customer_key", "Cdr")])
def test_a_cdr_matches_exactly_one_of_the_documented_shapes(api, cast, key, component):
    cdr = CdrFactory(customer=cast.a.customer, supplier=cast.supplier, node=cast.node)
    token = cast.operator_key if key == "operator_key" else cast.a.customer_key
    row = api(token).get(f"/api/v1/cdrs/{cdr.pk}/").json()
    components = _json_schema(committed_schema()["components"]["schemas"])
    matches = []
    for name in ("OperatorCdr", "Cdr"):
        schema = {**components[name], "components": {"schemas": components}}
        validator = jsonschema.Draft7Validator(schema)
        if validator.is_valid(row):
            matches.append(name)
    assert matches == [component]
