from decimal import Decimal

import pytest

from apps.billing import services as billing
from tests.conftest import Cast


def pay(peer, amount: str, reference: str) -> None:
    """Credit `peer`'s account through the billing service, as a real payment would."""
    from apps.tenancy.scope import Scope

    billing.post_payment(peer.account, actor=Scope.system(), amount=Decimal(amount), reference=reference)


@pytest.fixture
def client_a(client, cast: Cast):
    """A browser session signed in as reseller A's customer."""
    client.force_login(cast.a.customer_user)
    return client


def rows(response) -> int:
    """How many CDR rows the page shows."""
    return response.content.decode().count('<tr class="cdr">')
