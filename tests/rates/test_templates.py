"""Import templates: validated formats, written through services, scoped in the admin."""

import pytest
from django.core.exceptions import ValidationError

from apps.core.errors import NotAllowed
from apps.rates import services
from apps.rates.models import ImportTemplate
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD


def test_a_template_maps_headers_to_known_columns_only(db, system):
    template = services.create_import_template(
        actor=system,
        name="Carrier X",
        columns={"Code": "prefix", "Price": "rate", "Notes": ""},
        date_format="%d/%m/%Y",
        delimiter=";",
        decimal_comma=True,
    )
    assert template.pk
    with pytest.raises(ValidationError) as error:
        services.create_import_template(actor=system, name="Bad", columns={"Code": "prefixx"})
    assert "columns" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.create_import_template(actor=system, name="Bad dates", date_format="%H:%M")
    assert "date_format" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.create_import_template(actor=system, name="Bad delimiter", delimiter="a")
    assert "delimiter" in error.value.message_dict
    assert list(ImportTemplate.objects.values_list("name", flat=True)) == ["Carrier X"]


def test_resellers_keep_templates_for_their_own_tables(cast):
    staff_a = Scope.of_user(cast.a.staff)
    services.create_import_template(actor=staff_a, name="A format", table=cast.a.sell_table)
    with pytest.raises(NotAllowed):
        services.create_import_template(actor=staff_a, name="B format", table=cast.b.sell_table)
    with pytest.raises(NotAllowed):
        services.create_import_template(actor=staff_a, name="Operator format")
    assert set(ImportTemplate.objects.visible_to(cast.b.staff)) == set()


def test_the_admin_creates_a_template_and_refuses_another_resellers_table(cast, client):
    client.login(username=cast.a.staff.username, password=PASSWORD)
    form = {
        "name": "Mine",
        "columns": '{"Code": "prefix"}',
        "delimiter": ",",
        "clean_prefix": "on",
        "skip_lines": "0",
        "table": cast.a.sell_table.pk,
    }
    assert client.post("/admin/rates/importtemplate/add/", form).status_code == 302
    response = client.post(
        "/admin/rates/importtemplate/add/", {**form, "name": "Theirs", "table": cast.b.sell_table.pk}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert list(ImportTemplate.objects.values_list("name", flat=True)) == ["Mine"]
