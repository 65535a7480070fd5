"""/health/, which keepalived's track script and load balancers ask every second."""

import pytest

from apps.cluster import presence
from apps.cluster.presence import GaleraState

pytestmark = pytest.mark.django_db


def test_a_node_whose_database_answers_is_healthy(client, settings):
    settings.NODE_NAME = "node7"
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["node"] == "node7"


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (GaleraState(True, 3, "Synced", True, "Primary"), 200),
        # Cut off from the others, or the last of them: writes would be refused.
        (GaleraState(True, 1, "Initialized", False, "non-Primary"), 503),
        # Still joining (a state transfer): its data is not the cluster's yet.
        (GaleraState(True, 3, "Joiner", False, "Primary"), 503),
        (GaleraState(True, error='(2002, "Can\'t connect to local server")'), 503),
    ],
)
def test_a_galera_member_is_healthy_only_when_ready_in_the_primary_component(
    client, monkeypatch, state, code
):
    # The member's own status as `SHOW GLOBAL STATUS` gives it (apps.cluster.presence).
    monkeypatch.setattr(presence, "galera_state", lambda: state)
    response = client.get("/health/")
    assert response.status_code == code
    assert response.json()["database"] == state.summary()
    assert response.json()["status"] == ("ok" if code == 200 else "unavailable")
