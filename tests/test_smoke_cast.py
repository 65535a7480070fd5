from apps.peers.models import Peer


def test_cast_builds_and_scopes_peers(cast):
    assert set(Peer.objects.visible_to(cast.a.staff)) == {cast.a.customer}
    assert set(Peer.objects.visible_to(cast.a.customer_user)) == {cast.a.customer}
    assert Peer.objects.visible_to(cast.operator).count() == 4
