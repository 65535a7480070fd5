"""A rebuilt snapshot is frozen out of the garbage collector's way (snapshot._settle_heap).

The other tests skip that step (tests/conftest.py, `settle_heap`): a full collection of a
test process's heap cost more than the rest of a rebuild. This one runs it.
"""

import gc
import weakref

import pytest

from apps.callcontrol import snapshot
from apps.nodes.models import ClusterSettings
from tests.factories import make_peer


class Cycle:
    def __init__(self):
        self.me = self


@pytest.fixture
def real_settle_heap(settle_heap, monkeypatch):
    """The real step, with automatic collections off: only its own collection frees a cycle."""
    monkeypatch.setattr(snapshot, "_settle_heap", settle_heap)
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()  # the rest of the process's tests collect as usual


def walked(obj) -> bool:
    """Whether a collection still walks `obj` (gc.get_objects leaves frozen objects out)."""
    return gc.is_tracked(obj) and any(candidate is obj for candidate in gc.get_objects())


def test_a_rebuild_collects_the_garbage_then_freezes_the_snapshot(db, real_settle_heap):
    ClusterSettings.load()
    customer = make_peer("Acme")
    garbage = weakref.ref(Cycle())
    assert garbage() is not None  # nobody holds it, and nothing has collected it yet

    built = snapshot.current()

    assert garbage() is None
    assert gc.is_tracked(built)
    assert gc.is_tracked(built.peers[customer.pk])
    assert not walked(built)
    assert not walked(built.peers[customer.pk])
    assert gc.get_freeze_count() > 0
