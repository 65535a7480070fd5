"""A websocket to a path no live view serves is refused cleanly: the handshake is closed (HTTP
403 from the server), not a 500 with a traceback."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from smartswitch.asgi import application
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


async def _handshake(path: str, origin: bytes | None) -> dict:
    """The application's answer to a websocket connect: what channels' WebsocketCommunicator
    does, whose module cannot be imported here (channels.testing imports daphne, not installed)."""
    headers = [(b"host", b"localhost"), *([(b"origin", origin)] if origin else [])]
    scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers, "subprotocols": []}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "websocket.connect"})
    answer = await communicator.receive_output(timeout=5)
    # A server that refused the handshake tells the application the socket is gone; the
    # application then ends, and `wait` raises whatever it raised.
    await communicator.send_input({"type": "websocket.disconnect", "code": 1006})
    await communicator.wait(timeout=5)
    return answer


@pytest.mark.parametrize("path", ["/", "/ws/", "/ws/calls/", "/api/v1/peers/", "/no/such/path"])
def test_an_unknown_websocket_path_is_closed_without_an_error(path):
    assert asyncio.run(_handshake(path, b"http://localhost"))["type"] == "websocket.close"


def test_a_foreign_origin_is_closed_too():
    assert asyncio.run(_handshake("/ws/calls/", b"https://evil.example"))["type"] == "websocket.close"


@pytest.fixture
def server(tmp_path):
    """The ASGI application under uvicorn on a loopback port, with its own empty var directory."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(SMARTSWITCH_VAR_DIR=str(tmp_path), DEBUG="1")
    log = (tmp_path / "uvicorn.log").open("w")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start: {(tmp_path / 'uvicorn.log').read_text()}")
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}", tmp_path / "uvicorn.log"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_a_real_server_answers_an_unknown_websocket_path_with_403(server):
    base, log = server
    with pytest.raises(InvalidStatus) as refused, connect(f"{base}/ws/calls/", origin="http://127.0.0.1"):
        pass
    assert refused.value.response.status_code == 403
    assert "Traceback" not in log.read_text()
