"""Serving a file with HTTP ranges: what a browser's player needs to seek."""

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncRequestFactory, RequestFactory
from django.utils.http import http_date

from apps.files.serving import RangeNotSatisfiable, parse_range, serve_file

CONTENT = bytes(range(256)) * 4  # 1024 bytes, every offset recognisable


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "call.wav"
    path.write_bytes(CONTENT)
    return path


def get(path, *, download=False, method="get", **headers):
    request = getattr(RequestFactory(), method)("/x", headers=headers)
    return serve_file(request, path, content_type="audio/wav", filename="call 1.wav", download=download)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 1023)),
        ("bytes=0-99", (0, 99)),
        ("bytes=1000-5000", (1000, 1023)),
        ("bytes=-24", (1000, 1023)),
        ("bytes=-5000", (0, 1023)),
        ("bytes = 10 - 20", (10, 20)),
        ("", None),
        ("bytes=", None),
        ("bytes=-", None),
        ("bytes=20-10", None),
        ("bytes=0-1,5-9", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 1024) == expected


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1024)


def test_any_range_of_an_empty_file_is_not_satisfiable():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-10", 0)


def test_whole_file_says_ranges_are_accepted(wav):
    response = get(wav)

    assert response.status_code == 200
    assert body(response) == CONTENT
    assert response["Content-Length"] == "1024"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Disposition"] == 'inline; filename="call 1.wav"'
    assert "Content-Range" not in response


def test_a_range_is_a_partial_response(wav):
    response = get(wav, Range="bytes=100-199")

    assert response.status_code == 206
    assert body(response) == CONTENT[100:200]
    assert response["Content-Range"] == "bytes 100-199/1024"
    assert response["Content-Length"] == "100"


def test_an_open_range_runs_to_the_end_and_a_suffix_is_the_tail(wav):
    opened = get(wav, Range="bytes=1000-")
    suffix = get(wav, Range="bytes=-10")

    assert (opened.status_code, body(opened)) == (206, CONTENT[1000:])
    assert opened["Content-Range"] == "bytes 1000-1023/1024"
    assert (suffix.status_code, body(suffix)) == (206, CONTENT[-10:])


def test_a_large_range_is_read_in_chunks(tmp_path):
    path = tmp_path / "long.wav"
    content = bytes(range(256)) * 1024  # 256 KiB: several chunks
    path.write_bytes(content)

    response = get(path, Range="bytes=1-200000")

    assert body(response) == content[1:200001]


def test_a_range_past_the_end_is_416_with_the_size(wav):
    response = get(wav, Range="bytes=2000-")

    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */1024"
    assert response["Accept-Ranges"] == "bytes"


def test_a_malformed_range_gets_the_whole_file(wav):
    response = get(wav, Range="bytes=oops")

    assert response.status_code == 200
    assert body(response) == CONTENT


def test_download_is_an_attachment_with_the_name(wav):
    response = get(wav, download=True)

    assert response["Content-Disposition"] == 'attachment; filename="call 1.wav"'


def test_if_range_with_the_current_etag_keeps_the_range(wav):
    etag = get(wav)["ETag"]

    assert get(wav, Range="bytes=0-9", If_Range=etag).status_code == 206


def test_if_range_with_an_old_etag_or_date_sends_the_whole_file(wav):
    stale_etag = get(wav, Range="bytes=0-9", If_Range='"0-0"')
    stale_date = get(wav, Range="bytes=0-9", If_Range=http_date(wav.stat().st_mtime - 3600))
    current_date = get(wav, Range="bytes=0-9", If_Range=http_date(wav.stat().st_mtime + 1))

    assert stale_etag.status_code == 200
    assert stale_date.status_code == 200
    assert current_date.status_code == 206


def test_head_has_the_headers_and_no_body(wav):
    response = get(wav, method="head", Range="bytes=0-9")

    assert response.status_code == 206
    assert response["Content-Length"] == "10"
    assert body(response) == b""


def test_a_missing_file_is_a_404_that_says_so(tmp_path):
    response = get(tmp_path / "gone.wav")

    assert response.status_code == 404
    assert b"call 1.wav is not on this node." in response.content


def test_an_empty_file_is_served_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")

    response = get(path)

    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    assert body(response) == b""


def test_under_asgi_the_body_is_streamed_in_chunks_not_read_whole(tmp_path):
    path = tmp_path / "long.wav"
    content = bytes(range(256)) * 1024  # 256 KiB: several chunks
    path.write_bytes(content)
    request = AsyncRequestFactory().get("/x", headers={"Range": "bytes=10-"})

    response = serve_file(request, path, content_type="audio/wav", filename="long.wav", download=False)

    async def chunks():
        return [chunk async for chunk in response.streaming_content]

    assert response.is_async
    received = async_to_sync(chunks)()
    assert len(received) > 1
    assert b"".join(received) == content[10:]
    assert response.status_code == 206
