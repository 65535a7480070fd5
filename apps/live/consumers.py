"""ws/live/: the live figures of the connection's scope, pushed by this process's hub.

A socket is authenticated as the REST API authenticates a request: an API key in the
handshake's `Authorization: Bearer ssk_…` header (integrators), or else the session's user
(browsers, through AuthMiddlewareStack). Anonymous users, unknown keys and logins that
stand for nobody are refused before the handshake is accepted. The payload is the view of
the scope's audience (apps.live.figures.view); nothing the client sends changes what it sees.
"""

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.live import hub
from apps.tenancy.scope import Kind, Scope

logger = logging.getLogger(__name__)

KEYWORD = b"bearer"


def bearer_token(headers) -> str | None:
    """The token of an `Authorization: Bearer <token>` handshake header; "" when malformed."""
    for name, value in headers or ():
        if name.lower() == b"authorization":
            parts = value.decode("latin-1").split()
            if len(parts) == 2 and parts[0].lower().encode() == KEYWORD:
                return parts[1]
            return ""
    return None


def scope_of_key(token: str) -> Scope:
    from apps.tenancy.services import authenticate_api_key

    key = authenticate_api_key(token) if token else None
    return Scope.of_api_key(key) if key is not None else Scope(Kind.NOBODY, label="anonymous")


def scope_of_user(user) -> Scope:
    return Scope.of_user(user)


async def connection_scope(asgi_scope) -> Scope:
    """The tenant scope of a websocket handshake: its API key's, or else its session user's."""
    token = bearer_token(asgi_scope.get("headers"))
    if token is not None:
        # A header given and wrong is refused, not read as the session's user.
        return await database_sync_to_async(scope_of_key)(token)
    return await database_sync_to_async(scope_of_user)(asgi_scope.get("user"))


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """One browser's (or integrator's) live figures."""

    audience_key = None

    async def connect(self):
        self.tenant = await connection_scope(self.scope)
        if self.tenant.kind is Kind.NOBODY:
            await self.close()  # before accept: the server answers the handshake with 403
            return
        await self.accept()
        self.hub = hub.current()
        await self.hub.join(self, self.tenant)

    async def disconnect(self, code):
        if self.audience_key is not None:
            await self.hub.leave(self)

    async def receive_json(self, content, **kwargs):
        # The figures are pushed; a client has nothing to ask.
        return None

    async def push(self, message: dict) -> None:
        await self.send_json(message)
