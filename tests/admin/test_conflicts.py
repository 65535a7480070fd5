"""An admin save that meets a write conflict (Galera certification) is replayed whole."""

import pymysql
import pytest
from django.db import OperationalError

from apps.audit.models import AuditEntry
from apps.core.db import retry_stats
from apps.peers import services
from apps.peers.models import Peer
from tests.admin.conftest import admin_url, form_payload


def conflict() -> OperationalError:
    error = OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")
    error.__cause__ = pymysql.err.OperationalError(1213, "Deadlock found")
    return error


@pytest.mark.django_db(transaction=True)
def test_a_peer_change_that_conflicts_once_is_saved_once(cast, login, monkeypatch, settings):
    settings.DB_RETRY_BASE_DELAY = 0
    retry_stats.reset()
    real_update = services.update_peer
    calls = []

    def update_that_conflicts_first(*args, **kwargs):
        calls.append(1)
        result = real_update(*args, **kwargs)
        if len(calls) == 1:
            raise conflict()  # as Galera reports it at commit, after the work was done
        return result

    monkeypatch.setattr(services, "update_peer", update_that_conflicts_first)
    client = login(cast.operator)
    peer = cast.a.customer
    payload = form_payload(client.get(admin_url(peer)))
    payload["max_calls"] = "42"
    response = client.post(admin_url(peer), payload, follow=True)

    assert response.status_code == 200
    assert len(calls) == 2
    assert retry_stats.retries == 1
    assert Peer.objects.get(pk=peer.pk).max_calls == 42
    # The first attempt was rolled back whole: one audit entry, one success message.
    assert AuditEntry.objects.filter(action="peer.changed", object_id=str(peer.pk)).count() == 1
    assert len([m for m in response.context["messages"] if "changed successfully" in str(m)]) == 1
