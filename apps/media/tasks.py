"""Periodic work of the media app (apps.cluster.schedules runs each app's SCHEDULES)."""

from django.conf import settings

from apps.cluster.schedules import Periodic
from apps.media import recordings
from apps.nodes.models import Node

SCHEDULES = {
    # Each node makes its announcements directory match the database: a node that was away
    # when an announcement changed catches up (apps.media.announcements).
    "Write announcements": Periodic("apps.media.announcements.write_announcements", 10),
    # Each node registers the recordings whose RECORD_STOP its listener missed.
    "Register missed recordings": Periodic("apps.media.tasks.register_missed_recordings", 5),
}


def register_missed_recordings() -> int:
    """This node's recordings no RECORD_STOP registered, registered now (apps.media.recordings)."""
    node = Node.objects.filter(name=settings.NODE_NAME, media_enabled=True).first()
    return len(recordings.register_missed(node)) if node is not None else 0
