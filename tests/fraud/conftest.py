"""Fixtures the fraud-control tests share: the clock, a node, and a recorded OpenSIPS MI."""

import pytest
from django.utils import timezone

from apps.fraud import hangup
from tests.engines import RecordedMI
from tests.factories import NodeFactory


@pytest.fixture
def now():
    """The moment a test runs at, to the second (alerts and windows are compared to it)."""
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def node(db):
    return NodeFactory(name="node1", management_address="127.0.0.1")


@pytest.fixture
def mi(settings, monkeypatch):
    """A recorded OpenSIPS MI for node1, answering at once; hang-up retries do not pause."""
    monkeypatch.setattr(hangup, "PAUSES", (0, 0))
    with RecordedMI() as server:
        settings.OPENSIPS_MI_URL = server.template
        settings.OPENSIPS_MI_TIMEOUT = 0.5
        yield server
