"""Websocket routes; live views (active calls, CPS) are added by their issues."""

websocket_urlpatterns: list = []
