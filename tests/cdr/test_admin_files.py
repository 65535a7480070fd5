"""The CDR page's files: the recording's player and download, the capture's links; only for
whoever may see the CDR (the operator, the customer's reseller)."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.urls import include, path, reverse

from apps.files.models import StoredFile
from apps.media.recordings import register_recording
from smartswitch import urls as root_urls
from tests.factories import CdrFactory, NodeFactory

AUDIO = b"RIFF" + bytes(range(256)) * 8


def _page(request, pk):
    return HttpResponse(f"capture {pk}")


# For the tests that need capture pages to exist (apps.capture adds the real ones), and
# for those that need them absent: the project's URLs with either in place of apps.capture's.
_without_capture = [
    pattern for pattern in root_urls.urlpatterns if getattr(pattern, "namespace", None) != "capture"
]
_fake_capture = (
    [
        path("admin/<int:pk>/ladder/", _page, name="admin-ladder"),
        path("admin/<int:pk>/pcap/", _page, name="admin-pcap"),
    ],
    "capture",
)


class WithCapture:
    urlpatterns = [*_without_capture, path("capture/", include(_fake_capture))]


class WithoutCapture:
    urlpatterns = _without_capture


@pytest.fixture
def capture_pages(settings):
    settings.ROOT_URLCONF = WithCapture


@pytest.fixture
def no_capture_pages(settings):
    settings.ROOT_URLCONF = WithoutCapture


@pytest.fixture
def recorded(cast, tmp_path, settings):
    """A recorded call of reseller A's customer, its file on this node."""
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    settings.NODE_NAME = cast.node.name
    cdr = CdrFactory(customer=cast.a.customer, node=cast.node, call_id="rec-1")
    stored = register_file(cast.node, cdr, "a.wav", AUDIO)
    return cdr, stored


def register_file(node, cdr, name, content, *, kind="recording"):
    relative = f"{node.name}/2026/03/02/{name}"
    if kind == "capture":
        stored = StoredFile.objects.create(
            kind=kind, origin=node, relative_path=relative, size=1, sha256="0" * 64, call_id=cdr.call_id
        )
    else:
        from django.conf import settings

        path_ = settings.RECORDINGS_DIR / relative
        path_.parent.mkdir(parents=True, exist_ok=True)
        path_.write_bytes(content)
        stored = register_recording(node, call_id=cdr.call_id, path=path_)
    # Made as the call ended, as RECORD_STOP registers it.
    StoredFile.objects.filter(pk=stored.pk).update(created_at=cdr.ended_at + timedelta(seconds=1))
    stored.refresh_from_db()
    return stored


def change_url(cdr):
    return reverse("admin:cdr_cdr_change", args=[cdr.pk])


def recording_url(cdr, stored):
    return reverse("admin:cdr_cdr_recording", args=[cdr.pk, stored.pk])


def test_the_operator_plays_and_downloads_a_calls_recording(login, cast, recorded):
    cdr, stored = recorded
    client = login(cast.operator)

    page = client.get(change_url(cdr)).content.decode()
    played = client.get(recording_url(cdr, stored), headers={"Range": "bytes=0-3"})
    downloaded = client.get(recording_url(cdr, stored), {"download": "1"})

    assert f'<audio controls preload="metadata" src="{recording_url(cdr, stored)}">' in page
    assert f'href="{recording_url(cdr, stored)}?download=1"' in page
    assert played.status_code == 206
    assert b"".join(played.streaming_content) == b"RIFF"
    assert played["Content-Type"] == "audio/wav"
    assert played["Accept-Ranges"] == "bytes"
    assert downloaded.status_code == 200
    assert downloaded["Content-Disposition"] == 'attachment; filename="a.wav"'
    assert b"".join(downloaded.streaming_content) == AUDIO


def test_the_customers_reseller_hears_it_and_the_other_reseller_cannot_reach_it(login, cast, recorded):
    cdr, stored = recorded

    own = login(cast.a.staff)
    assert recording_url(cdr, stored) in own.get(change_url(cdr)).content.decode()
    assert own.get(recording_url(cdr, stored)).status_code == 200

    other = login(cast.b.staff)
    assert other.get(change_url(cdr)).status_code in (302, 404)  # the admin's "does not exist"
    assert other.get(recording_url(cdr, stored)).status_code == 404
    assert other.get(recording_url(cdr, stored), {"download": "1"}).status_code == 404


def test_a_customer_login_cannot_use_the_admins_recording_url(login, cast, recorded):
    cdr, stored = recorded

    response = login(cast.a.customer_user).get(recording_url(cdr, stored))

    assert response.status_code == 302  # to the admin's sign-in: not staff
    assert "/admin/login/" in response["Location"]


def test_a_file_of_another_call_is_not_served_through_this_one(login, cast, recorded):
    cdr, _ = recorded
    other_cdr = CdrFactory(customer=cast.b.customer, node=cast.node, call_id="rec-2")
    others = register_file(cast.node, other_cdr, "b.wav", AUDIO)

    response = login(cast.a.staff).get(recording_url(cdr, others))

    assert response.status_code == 404


def test_a_call_without_files_has_no_files_panel(login, cast):
    cdr = CdrFactory(customer=cast.a.customer, node=cast.node)

    page = login(cast.operator).get(change_url(cdr)).content.decode()

    assert 'id="call-files"' not in page


def test_a_recording_not_yet_copied_here_says_so_and_is_a_409(login, cast, recorded, settings, tmp_path):
    cdr, stored = recorded
    NodeFactory(name="node2")
    settings.NODE_NAME = "node2"  # this page is served by node2, which has no copy yet
    settings.RECORDINGS_DIR = tmp_path / "node2-recordings"
    client = login(cast.operator)

    page = client.get(change_url(cdr)).content.decode()
    response = client.get(recording_url(cdr, stored))

    assert "still being copied to the server you reached" in page
    assert "<audio" not in page
    assert response.status_code == 409


def test_an_empty_recording_is_said_to_hold_no_audio(login, cast, recorded):
    cdr, _ = recorded
    empty_cdr = CdrFactory(customer=cast.a.customer, node=cast.node, call_id="rec-empty")
    register_file(cast.node, empty_cdr, "empty.wav", b"")

    page = login(cast.operator).get(change_url(empty_cdr)).content.decode()

    assert "the file holds no audio" in page
    assert "<audio" not in page
    assert cdr.pk


def test_a_captured_call_links_to_its_ladder_and_pcap(login, cast, recorded, capture_pages):
    cdr, _ = recorded
    register_file(cast.node, cdr, "a.pcap", b"", kind="capture")

    page = login(cast.operator).get(change_url(cdr)).content.decode()

    assert f'href="/capture/admin/{cdr.pk}/ladder/"' in page
    assert f'href="/capture/admin/{cdr.pk}/pcap/"' in page


def test_no_capture_links_without_a_capture(login, cast, recorded, capture_pages):
    cdr, _ = recorded

    page = login(cast.operator).get(change_url(cdr)).content.decode()

    assert "/ladder/" not in page


def test_no_capture_links_while_the_capture_pages_do_not_exist(login, cast, recorded, no_capture_pages):
    cdr, _ = recorded
    register_file(cast.node, cdr, "a.pcap", b"", kind="capture")

    response = login(cast.operator).get(change_url(cdr))

    assert response.status_code == 200
    assert "SIP capture" not in response.content.decode()
