"""ASGI entry point: call control straight to its handler, other HTTP through Django,
websockets through Channels."""

import asyncio
import logging
import os

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application
from django.urls import re_path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartswitch.settings")
django_asgi_app = get_asgi_application()

from apps.callcontrol import endpoint as call_control  # noqa: E402
from smartswitch.routing import websocket_urlpatterns  # noqa: E402  (needs Django set up)

logger = logging.getLogger(__name__)


class UnknownPath(AsyncWebsocketConsumer):
    """Refuse the handshake of a path no live view serves: the server answers 403."""

    async def connect(self):
        # URLRouter raises for a path none of its routes match, which servers turn into a 500
        # with a traceback in the log; closing before accepting is the clean refusal.
        await self.close()


sockets = AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, re_path(r"", UnknownPath.as_asgi())]))
browser_sockets = AllowedHostsOriginValidator(sockets)


async def websocket(scope, receive, send):
    # The Origin check stops another site's page from opening a socket with our session
    # cookie. An integrator's client sends no Origin but an API key (apps.live.consumers
    # then ignores the session), which no page of another site can set on a websocket.
    headers = dict(scope.get("headers") or ())
    if b"origin" not in headers and b"authorization" in headers:
        return await sockets(scope, receive, send)
    return await browser_sockets(scope, receive, send)


router = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket})


async def lifespan(receive, send):
    """The server's start and stop (uvicorn --lifespan on): call control is made ready before
    this process accepts its first request (call_control.warm_up), and its threads' database
    connections are closed when it stops (call_control.close_connections)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await asyncio.get_running_loop().run_in_executor(None, call_control.warm_up)
            except Exception:  # a cold start is slower, not broken: serve anyway
                logger.exception("call control could not warm up")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await asyncio.get_running_loop().run_in_executor(None, call_control.close_connections)
            except Exception:  # stopping anyway: the database drops what is left
                logger.exception("call control could not close its database connections")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    # OpenSIPS asks for every INVITE: skip middleware, sessions and URL resolution.
    if scope["type"] == "http" and scope["path"].startswith(call_control.PREFIX):
        return await call_control.asgi_app(scope, receive, send)
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    return await router(scope, receive, send)
