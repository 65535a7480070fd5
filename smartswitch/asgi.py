"""ASGI entry point: call control straight to its handler, other HTTP through Django,
websockets through Channels."""

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


class UnknownPath(AsyncWebsocketConsumer):
    """Refuse the handshake of a path no live view serves: the server answers 403."""

    async def connect(self):
        # URLRouter raises for a path none of its routes match, which servers turn into a 500
        # with a traceback in the log; closing before accepting is the clean refusal.
        await self.close()


router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, re_path(r"", UnknownPath.as_asgi())]))
        ),
    }
)


async def application(scope, receive, send):
    # OpenSIPS asks for every INVITE: skip middleware, sessions and URL resolution.
    if scope["type"] == "http" and scope["path"].startswith(call_control.PREFIX):
        return await call_control.asgi_app(scope, receive, send)
    return await router(scope, receive, send)
