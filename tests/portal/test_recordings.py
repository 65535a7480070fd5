"""A customer's recorded calls in the portal: the list says which, the call's page plays and
offers the recording; another customer gets a 404 for the page and for the file."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.urls import include, path, reverse

from apps.files.models import StoredFile
from apps.media.recordings import register_recording
from smartswitch import urls as root_urls
from tests.factories import CdrFactory, NodeFactory

AUDIO = b"RIFF" + bytes(range(256)) * 8
CDRS = reverse("portal:cdrs")


@pytest.fixture
def recordings_dir(tmp_path, settings, cast):
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    settings.NODE_NAME = cast.node.name
    return settings.RECORDINGS_DIR


def record(cast, cdr, name: str, content: bytes = AUDIO, *, kind: str = "recording") -> StoredFile:
    """The file of `cdr`'s call as its node registers it when the call ends."""
    from django.conf import settings

    relative = f"{cast.node.name}/2026/03/02/{name}"
    if kind == "capture":
        stored = StoredFile.objects.create(
            kind=kind, origin=cast.node, relative_path=relative, size=1, sha256="0" * 64, call_id=cdr.call_id
        )
    else:
        target = settings.RECORDINGS_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        stored = register_recording(cast.node, call_id=cdr.call_id, path=target)
    StoredFile.objects.filter(pk=stored.pk).update(created_at=cdr.ended_at + timedelta(seconds=1))
    return stored


@pytest.fixture
def recorded(cast, recordings_dir):
    cdr = CdrFactory(customer=cast.a.customer, node=cast.node, call_id="a-rec", callee="4930111")
    return cdr, record(cast, cdr, "a-rec.wav")


def call_url(cdr):
    return reverse("portal:call", args=[cdr.pk])


def recording_url(cdr, stored):
    return reverse("portal:call-recording", args=[cdr.pk, stored.pk])


def test_the_call_list_marks_the_recorded_calls(client_a, cast, recorded):
    cdr, _ = recorded
    plain = CdrFactory(customer=cast.a.customer, node=cast.node, call_id="a-plain")

    body = client_a.get(CDRS).content.decode()

    assert f'href="{call_url(cdr)}#recordings">Listen</a>' in body
    assert f'href="{call_url(plain)}#recordings"' not in body
    assert f'href="{call_url(plain)}"' in body  # every call has its page


def test_the_call_page_plays_and_offers_the_recording(client_a, cast, recorded):
    cdr, stored = recorded

    response = client_a.get(call_url(cdr))

    body = response.content.decode()
    assert response.status_code == 200
    assert f'<audio controls preload="metadata" src="{recording_url(cdr, stored)}">' in body
    assert f'href="{recording_url(cdr, stored)}?download=1"' in body
    # The operator's side of the call stays out of the page.
    assert cast.supplier.name not in body
    assert stored.relative_path not in body


def test_the_customer_seeks_and_downloads_its_recording(client_a, recorded):
    cdr, stored = recorded

    played = client_a.get(recording_url(cdr, stored), headers={"Range": "bytes=4-7"})
    downloaded = client_a.get(recording_url(cdr, stored), {"download": "1"})
    past_the_end = client_a.get(recording_url(cdr, stored), headers={"Range": f"bytes={len(AUDIO)}-"})

    assert played.status_code == 206
    assert played["Content-Range"] == f"bytes 4-7/{len(AUDIO)}"
    assert b"".join(played.streaming_content) == AUDIO[4:8]
    assert played["Content-Type"] == "audio/wav"
    assert downloaded.status_code == 200
    assert downloaded["Content-Disposition"] == 'attachment; filename="a-rec.wav"'
    assert b"".join(downloaded.streaming_content) == AUDIO
    assert past_the_end.status_code == 416


def test_another_customer_gets_404_for_the_page_and_the_file(client, cast, recorded):
    cdr, stored = recorded
    client.force_login(cast.b.customer_user)

    assert client.get(call_url(cdr)).status_code == 404
    assert client.get(recording_url(cdr, stored)).status_code == 404
    assert client.get(recording_url(cdr, stored), {"download": "1"}).status_code == 404
    assert "#recordings" not in client.get(CDRS).content.decode()


def test_a_recording_is_only_reached_through_its_own_call(client_a, cast, recorded):
    cdr, _ = recorded
    b_call = CdrFactory(customer=cast.b.customer, node=cast.node, call_id="b-rec")
    b_recording = record(cast, b_call, "b-rec.wav")

    # A's own call id with B's file id: still a 404.
    assert client_a.get(recording_url(cdr, b_recording)).status_code == 404


def test_staff_and_the_anonymous_do_not_get_recordings_from_the_portal(client, cast, recorded):
    cdr, stored = recorded

    anonymous = client.get(recording_url(cdr, stored))
    client.force_login(cast.a.staff)
    staff = client.get(recording_url(cdr, stored))

    assert anonymous.status_code == 302 and "/portal/login/" in anonymous["Location"]
    assert staff.status_code == 403


def test_an_unrecorded_call_says_so(client_a, cast, recordings_dir):
    cdr = CdrFactory(customer=cast.a.customer, node=cast.node)

    body = client_a.get(call_url(cdr)).content.decode()

    assert "This call was not recorded." in body
    assert "<audio" not in body


def test_a_recording_still_being_copied_here_is_explained_not_an_error(
    client_a, cast, recorded, settings, tmp_path
):
    cdr, stored = recorded
    NodeFactory(name="node2")
    settings.NODE_NAME = "node2"
    settings.RECORDINGS_DIR = tmp_path / "node2-recordings"

    page = client_a.get(call_url(cdr))
    file = client_a.get(recording_url(cdr, stored))

    assert page.status_code == 200
    assert "still being copied to the server you reached" in page.content.decode()
    assert file.status_code == 409
    assert "node1" not in page.content.decode() + file.content.decode()


def _page(request, pk):
    return HttpResponse(f"capture {pk}")


class WithCapture:
    urlpatterns = [
        *(p for p in root_urls.urlpatterns if getattr(p, "namespace", None) != "capture"),
        path(
            "capture/",
            include(
                (
                    [
                        path("portal/<int:pk>/ladder/", _page, name="portal-ladder"),
                        path("portal/<int:pk>/pcap/", _page, name="portal-pcap"),
                    ],
                    "capture",
                )
            ),
        ),
    ]


def test_a_captured_call_links_to_its_ladder_and_pcap(client_a, cast, recorded, settings):
    settings.ROOT_URLCONF = WithCapture
    cdr, _ = recorded
    record(cast, cdr, "a-rec.pcap", kind="capture")
    uncaptured = CdrFactory(customer=cast.a.customer, node=cast.node, call_id="a-plain")

    body = client_a.get(call_url(cdr)).content.decode()

    assert f'href="/capture/portal/{cdr.pk}/ladder/"' in body
    assert f'href="/capture/portal/{cdr.pk}/pcap/"' in body
    assert "/ladder/" not in client_a.get(call_url(uncaptured)).content.decode()


def test_the_call_page_costs_a_fixed_number_of_queries(
    client_a, cast, recorded, django_assert_max_num_queries
):
    cdr, stored = recorded
    for n in range(3):
        record(cast, cdr, f"more-{n}.wav")

    with django_assert_max_num_queries(8):
        assert client_a.get(call_url(cdr)).content.decode().count("<audio") == 4
    assert stored.pk
