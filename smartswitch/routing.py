"""Websocket routes: each live view's app brings its own (apps/<app>/routing.py)."""

from apps.live.routing import websocket_urlpatterns as live

websocket_urlpatterns: list = [*live]
