"""POST /call-control/v1/authorize and /release: what OpenSIPS asks for every call.

The hot path does not go through Django's request handling: the ASGI entry point
(smartswitch.asgi) hands /call-control/ to `asgi_app` below, which reads the body, runs
`handle` on a small thread pool (the decision and the database are synchronous) and writes
the answer. No middleware, session, user or URL resolution; the snapshot and the rate
indexes are in memory; the money is one transaction. The same `handle` also serves the
DRF views in apps.callcontrol.api for WSGI and the test client, and documents the schema.
"""

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services import reservations
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.decision import CallRequest, decide, settle
from apps.core.api_limits import JSONTooDeep, loads
from apps.rates.lookup import get_index

logger = logging.getLogger(__name__)

PREFIX = "/call-control/v1/"
MAX_BODY = 16 * 1024
NUMBER_MAX = 64


class BadRequest(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


class Unauthorized(Exception):
    pass


def _text(data: dict, name: str, *, required: bool = True, limit: int = 255) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest({name: "This field is required."})
        return None
    if not isinstance(value, str):
        raise BadRequest({name: "Must be a string."})
    if len(value) > limit:
        raise BadRequest({name: f"At most {limit} characters."})
    return value


def _integer(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest({name: "Must be an integer or null."})
    try:
        return int(value)
    except ValueError:
        raise BadRequest({name: "Must be an integer or null."}) from None


DIGITS = re.compile(r"\+?([0-9]+)")
SIP_USER = re.compile(r"[A-Za-z0-9._+-]+")
DOMAIN = re.compile(r"[A-Za-z0-9.:\[\]-]+")


def _callee(value: str) -> str:
    """A number: digits after an optional +. Anything else may name a SIP account of ours.

    Prices, blocklists and routes read digits only: "1-900-555" is never priced as "1" or
    slips past a "1900" blocklist; call control takes it for an account's name and, with
    no such account, refuses the call (decision._on_net).
    """
    match = DIGITS.fullmatch(value)
    if match is not None:
        return match[1]
    if SIP_USER.fullmatch(value) is None:
        raise BadRequest({"callee": "Digits (optionally after a +) or a SIP user name."})
    return value


def _domain(value: str | None) -> str | None:
    if value is not None and DOMAIN.fullmatch(value) is None:
        raise BadRequest({"callee_domain": "A host name or an IP address."})
    return value


def _caller(value: str) -> str:
    """A caller number is digits (a leading + dropped); a name without digits ("anonymous") is kept."""
    match = DIGITS.fullmatch(value)
    if match is not None:
        return match[1]
    if any(char.isdigit() for char in value) or not value.isprintable():
        raise BadRequest({"caller": "Digits only, optionally after a leading +, or a name without digits."})
    return value


def _address(data: dict, name: str) -> str | None:
    value = _text(data, name, required=False, limit=45)
    if value is not None:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise BadRequest({name: "Not an IP address."}) from None
    return value


def parse_authorize(data) -> CallRequest:
    """Validate an authorize body; BadRequest names the first wrong field."""
    if not isinstance(data, dict):
        raise BadRequest({"non_field_errors": "Send a JSON object."})
    source_ip, local_ip = (_address(data, name) for name in ("source_ip", "local_ip"))
    request = CallRequest(
        call_id=_text(data, "call_id"),
        node=_text(data, "node", limit=31),
        caller=_caller(_text(data, "caller", required=False, limit=NUMBER_MAX) or ""),
        callee=_callee(_text(data, "callee", limit=NUMBER_MAX)),
        source_ip=source_ip,
        peer_id=_integer(data, "peer_id"),
        auth_user=_text(data, "auth_user", required=False),
        source_port=_integer(data, "source_port"),
        transport=_text(data, "transport", required=False, limit=4),
        callee_domain=_domain(_text(data, "callee_domain", required=False, limit=253)),
        local_ip=local_ip,
    )
    if request.source_ip is None and request.peer_id is None and request.auth_user is None:
        raise BadRequest({"source_ip": "Give source_ip, peer_id or auth_user to identify the caller."})
    return request


def _check_secret(snapshot, node_name: str, authorization: str | None) -> None:
    node = snapshot.nodes.get(node_name)
    scheme, _, token = (authorization or "").partition(" ")
    if (
        node is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.encode(), node.secret.encode())
    ):
        raise Unauthorized


def _check_some_secret(snapshot, authorization: str | None) -> None:
    """Refuse a caller whose token is no node's secret, before its body is read.

    The node a secret must belong to is named in the body; `_check_secret` checks that
    match once the body is parsed. Until then only a cluster member gets its body parsed.
    """
    scheme, _, token = (authorization or "").partition(" ")
    known = False
    for node in snapshot.nodes.values():
        # No early exit: the time taken does not tell how many nodes were compared.
        known |= hmac.compare_digest(token.encode(), node.secret.encode())
    if scheme.lower() != "bearer" or not known:
        raise Unauthorized


def authorize(data, authorization: str | None) -> tuple[int, dict]:
    request = parse_authorize(data)
    snapshot = snapshots.current()
    _check_secret(snapshot, request.node, authorization)
    decision = decide(snapshot, request, at=timezone.now())
    try:
        settle(snapshot, decision, reserve=True)
    except reservations.CallReleased as exc:
        # OpenSIPS gave up on this request and released the call meanwhile: nobody reads
        # this answer, and no call may go on it without money held.
        decision.targets = []
        decision.reject(487, "Released before authorized", "money", str(exc))
    if not decision.routed:
        logger.debug(
            "call %s from %s rejected: %s %s",
            request.call_id,
            request.source_ip,
            decision.code,
            decision.reason,
        )
    return 200, decision.as_response()


def release(data, authorization: str | None) -> tuple[int, dict]:
    if not isinstance(data, dict):
        raise BadRequest({"non_field_errors": "Send a JSON object."})
    node = _text(data, "node", limit=31)
    call_id = _text(data, "call_id")
    reservation = _integer(data, "reservation")
    snapshot = snapshots.current()
    _check_secret(snapshot, node, authorization)
    outcome = Reservation.Outcome.FAILED
    if reservation is not None:
        released = int(reservations.release(reservation, outcome=outcome, call_id=call_id))
    else:
        # Without the reservation's id the answer never reached OpenSIPS: the reservation
        # may still be on its way, and the node's marker refuses it (docs/CALL_CONTROL.md).
        node_id = snapshot.nodes[node].id
        released = reservations.release_or_mark(call_id, node_id=node_id, outcome=outcome)
    return 200, {"released": released}


def answered(data, authorization: str | None) -> tuple[int, dict]:
    """OpenSIPS's notice that a call was answered (200 OK to the INVITE)."""
    if not isinstance(data, dict):
        raise BadRequest({"non_field_errors": "Send a JSON object."})
    node = _text(data, "node", limit=31)
    call_id = _text(data, "call_id")
    reservation = _integer(data, "reservation")
    if reservation is None:
        raise BadRequest({"reservation": "This field is required."})
    snapshot = snapshots.current()
    _check_secret(snapshot, node, authorization)
    done = reservations.mark_answered(reservation, call_id=call_id, grace=snapshot.reservation_grace)
    return 200, {"answered": int(done)}


def auth_failed(data, authorization: str | None) -> tuple[int, dict]:
    """OpenSIPS's notice of a failed digest authentication (the SIP brute-force controller).

    Sent fire and forget for each request whose credentials failed (wrong password, unknown
    user): `username` and `domain` are the credentials' user and realm. The answer says
    whether the address is banned; OpenSIPS does not wait for it.
    """
    from apps.fraud import bruteforce

    if not isinstance(data, dict):
        raise BadRequest({"non_field_errors": "Send a JSON object."})
    node = _text(data, "node", limit=31)
    source_ip = _text(data, "source_ip", limit=45)
    try:
        source_ip = str(ipaddress.ip_address(source_ip))
    except ValueError:
        raise BadRequest({"source_ip": "Not an IP address."}) from None
    # Whatever the client sent is counted: a long made-up user must not slip past the count
    # of its address (the stored name is cut to length).
    username = _text(data, "username", required=False, limit=1024) or ""
    domain = _text(data, "domain", required=False, limit=1024) or ""
    snapshot = snapshots.current()
    _check_secret(snapshot, node, authorization)
    banned = bruteforce.sip_failure(source_ip, username, domain=domain, node_id=snapshot.nodes[node].id)
    return 200, {"banned": int(banned)}


HANDLERS = {"authorize": authorize, "release": release, "answered": answered, "auth-failed": auth_failed}
# A refusal like any other (HTTP 200 carrying the SIP code), so that OpenSIPS sends no release
# for it: nothing was held, and a release is work call control cannot take just then.
OVERLOADED = {"action": "reject", "code": 503, "reason": "Call control overloaded", "retry_after": 1}


class Shedding:
    """Authorizations refused unread (OVERLOADED) because they waited too long for a thread.

    Logged at most once per `every` seconds with the count since the last line: under an
    overload a line per call would add to it; OpenSIPS counts each in its statistics too.
    """

    def __init__(self, every: float = 10.0) -> None:
        self._lock = threading.Lock()
        self.every = every
        self.total = 0
        self._unlogged = 0
        self._logged_at = float("-inf")

    def add(self, waited: float, *, now: float) -> None:
        with self._lock:
            self.total += 1
            self._unlogged += 1
            if now - self._logged_at < self.every:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
        logger.warning(
            "call control overloaded: %d authorization(s) refused unread, the last after waiting %.2fs",
            count,
            waited,
        )


shedding = Shedding()


def handle(
    operation: str, body: bytes, authorization: str | None, *, received: float | None = None
) -> tuple[int, dict]:
    """Run one call-control operation on a raw body: (HTTP status, JSON object).

    `received` (time.monotonic()) is when the request came in: an authorization that waited
    longer than CALL_CONTROL_QUEUE_TIMEOUT for a thread is refused unread, before any work.
    Releases and notices are never refused: they give money back or record what happened.
    """
    if operation == "authorize" and received is not None:
        now = time.monotonic()
        if now - received > settings.CALL_CONTROL_QUEUE_TIMEOUT:
            shedding.add(now - received, now=now)
            return 200, OVERLOADED
    try:
        _check_some_secret(snapshots.current(), authorization)
        try:
            data = loads(body)
        except JSONTooDeep as exc:
            raise BadRequest({"non_field_errors": f"The body is {exc}."}) from None
        except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            raise BadRequest({"non_field_errors": "The body is not JSON."}) from None
        return HANDLERS[operation](data, authorization)
    except BadRequest as exc:
        return 400, {"errors": exc.errors}
    except Unauthorized:
        return 401, {"detail": "Unknown node or wrong secret."}
    except DatabaseError:
        # Never let a call through on an error: OpenSIPS rejects with 503 on anything
        # but a 200. Drop the connection so that the next request opens a fresh one.
        logger.exception("call control: database error")
        connection.close()
        return 503, {"action": "reject", "code": 503, "reason": "Call control unavailable"}


_executor = ThreadPoolExecutor(max_workers=settings.CALL_CONTROL_THREADS, thread_name_prefix="call-control")


def warm_up() -> None:
    """Get this process ready for its first call: the snapshot built, every price list's
    index open, a database connection on each of the call threads.

    Run at the server's start (smartswitch.asgi, ASGI lifespan), before the process takes
    requests. Cold, the first calls after a restart under traffic waited for all of this
    (the snapshot, an index rebuilt when its file was missing, eight connections opened at
    once) while more arrived behind them. Never fails the start: a node whose database is
    down must still come up and answer 503 until it is back; what could not be done is
    done by the first calls, as before.
    """
    started = time.monotonic()
    try:
        snapshot = snapshots.current()
        tables = {
            table
            for peer in snapshot.peers.values()
            for table in (peer.sell_table_id, peer.buy_table_id)
            if table is not None
        }
        for table in sorted(tables):
            get_index(table)
    except DatabaseError as exc:  # down, or not migrated yet: nothing to add to the message
        logger.warning("call control starts cold: the database did not answer (%s)", exc)
        return
    except Exception:
        logger.exception("call control starts cold: its snapshot or price indexes could not be loaded")
        return
    finally:
        connection.close()  # this thread's: it serves no call

    def connect() -> bool:
        try:
            connection.ensure_connection()
        except DatabaseError:
            return False
        return True

    connected = sum(_on_every_thread(connect))
    logger.info(
        "call control ready in %.2f s: snapshot of %d peers, %d price indexes, %d of %d connections",
        time.monotonic() - started,
        len(snapshot.peers),
        len(tables),
        connected,
        settings.CALL_CONTROL_THREADS,
    )


def close_connections() -> None:
    """Close every call thread's database connection: run at the server's stop (ASGI
    lifespan), so that the database sees them end rather than drop."""
    _on_every_thread(lambda: connection.close())  # each thread's own, looked up on it


def _on_every_thread(task):
    """Run `task` once on each call thread; its results. One task per thread, each held
    until all have started, so that none runs twice on the same thread."""
    threads = settings.CALL_CONTROL_THREADS
    together = threading.Barrier(threads)

    def held():
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=10)
        return task()

    return [future.result() for future in [_executor.submit(held) for _ in range(threads)]]


async def asgi_app(scope, receive, send) -> None:
    """The ASGI application for PREFIX paths (see smartswitch.asgi)."""
    operation = scope["path"][len(PREFIX) :].strip("/")
    if scope["method"] != "POST" or operation not in HANDLERS:
        if operation in HANDLERS:
            # RFC 9110: a 405 lists the methods the resource takes.
            return await _respond(send, 405, {"detail": "Use POST."}, headers=[(b"allow", b"POST")])
        return await _respond(send, 404, {"detail": "Not found."})
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return await _respond(send, 413, {"detail": "Body too large."})
        chunks.append(chunk)
        more = message.get("more_body", False)
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
    loop = asyncio.get_running_loop()
    work = functools.partial(handle, operation, b"".join(chunks), authorization, received=time.monotonic())
    status, payload = await loop.run_in_executor(_executor, work)
    await _respond(send, status, payload)


async def _respond(send, status: int, payload: dict, *, headers: list | None = None) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
