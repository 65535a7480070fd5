"""Billing's call-control world: customers, suppliers with gateways and price lists."""

from tests.callcontrol.conftest import _fresh_memory, world  # noqa: F401 - fixtures
