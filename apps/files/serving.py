"""Serve a file of this node to a browser, with HTTP range requests so players can seek.

An <audio> element asks for `Range: bytes=0-` and then for the part the user seeks to;
without 206 answers Chrome cannot seek at all and Firefox downloads the whole recording
first. Only single ranges are answered: no browser player asks for several at once, and
RFC 9110 lets a server answer such a request (or a malformed Range) with the whole file.
"""

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

CHUNK = 64 * 1024
# One range of bytes: "500-999", "500-" (to the end) or "-500" (the last 500 bytes).
SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    """The Range asks for bytes the file does not have."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes, inclusive, of `header` in a file of `size` bytes.

    None when the whole file is to be sent: no header, a malformed one or several ranges
    (RFC 9110 14.2 lets the server ignore those). Raises RangeNotSatisfiable for a range
    that starts past the end or a suffix of zero bytes.
    """
    match = SINGLE_RANGE.match(header.replace(" ", "")) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid, not unsatisfiable: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(int(last) if last else size - 1, size - 1)


def _read(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                return  # the file shrank under us: the client sees a short body
            length -= len(chunk)
            yield chunk


async def _aread(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    # Under ASGI Django reads a synchronous body whole into memory before sending it (an
    # hour's recording is 100 MB): an async body is sent chunk by chunk, each read in a
    # thread so the event loop never waits on the disk.
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        while length > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _range_applies(request, etag: str, mtime: float) -> bool:
    """If-Range: the range holds only while the file is the one the client started on."""
    condition = request.headers.get("If-Range")
    if not condition:
        return True
    if condition.startswith(('"', 'W/"')):
        return condition == etag
    since = parse_http_date_safe(condition)
    return since is not None and int(mtime) <= since


def serve_file(request, path: Path, *, content_type: str, filename: str, download: bool) -> HttpResponse:
    """Answer `request` with the bytes of `path` (whole, or the one range asked for).

    `download` makes browsers save it as `filename` rather than play or show it. The caller
    has decided the user may read the file; a file missing here is a 404 that says so.
    """
    try:
        stat = path.stat()
    except OSError:
        return HttpResponse(
            f"{filename} is not on this node.", status=404, content_type="text/plain; charset=utf-8"
        )
    size = stat.st_size
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    try:
        wanted = parse_range(request.headers.get("Range", ""), size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416, content_type="text/plain; charset=utf-8")
        response["Content-Range"] = f"bytes */{size}"
        return _common(response, etag, stat.st_mtime, filename, download)
    if wanted is not None and not _range_applies(request, etag, stat.st_mtime):
        wanted = None
    start, end = wanted if wanted is not None else (0, size - 1)
    length = max(end - start + 1, 0)
    if request.method == "HEAD":
        body = []
    elif isinstance(request, ASGIRequest):
        body = _aread(path, start, length)
    else:
        body = _read(path, start, length)
    response = StreamingHttpResponse(body, status=206 if wanted else 200, content_type=content_type)
    response["Content-Length"] = str(length)
    if wanted is not None:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return _common(response, etag, stat.st_mtime, filename, download)


def _common(response: HttpResponse, etag: str, mtime: float, filename: str, download: bool) -> HttpResponse:
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Last-Modified"] = http_date(mtime)
    response["Content-Disposition"] = content_disposition_header(download, os.path.basename(filename))
    # Calls are private: no shared cache keeps them, whoever asked.
    response["Cache-Control"] = "private, max-age=0"
    response["X-Content-Type-Options"] = "nosniff"
    return response
