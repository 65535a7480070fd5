"""The live views' websocket routes (joined in smartswitch.routing)."""

from django.urls import path

from apps.live.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi(), name="live-socket"),
]
