"""The call-control world (tests/callcontrol/conftest.py) serves billing too: rating needs
the same customers, suppliers and price lists that call control routed the calls with."""

from tests.callcontrol.conftest import _fresh_memory, one_minute, world  # noqa: F401 - fixtures
