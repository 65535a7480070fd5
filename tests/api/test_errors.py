"""The one mapping of domain and model errors to HTTP, in apps.core.api.exception_handler."""

from django.core.exceptions import ValidationError

from apps.core.api import exception_handler
from apps.core.errors import Conflict, DomainError, NotAllowed


def test_a_domain_error_names_its_field():
    response = exception_handler(DomainError("Too short.", field="password"), {})
    assert (response.status_code, response.data) == (400, {"password": ["Too short."]})


def test_domain_errors_without_a_field_keep_their_status():
    response = exception_handler(NotAllowed("Not yours."), {})
    assert (response.status_code, response.data) == (403, {"detail": "Not yours."})
    assert exception_handler(Conflict("Posted twice.", field="reference"), {}).status_code == 409


def test_model_validation_errors_name_their_fields():
    exc = ValidationError({"tech_prefix": ["Use digits only."], "__all__": ["Clash."]})
    response = exception_handler(exc, {})
    assert response.status_code == 400
    assert response.data == {"tech_prefix": ["Use digits only."], "non_field_errors": ["Clash."]}


def test_a_plain_model_validation_error_is_a_non_field_error():
    response = exception_handler(ValidationError(["One.", "Two."]), {})
    assert (response.status_code, response.data) == (400, {"non_field_errors": ["One.", "Two."]})


def test_other_exceptions_are_left_to_drf():
    assert exception_handler(RuntimeError("boom"), {}) is None
