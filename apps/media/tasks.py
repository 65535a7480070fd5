"""Periodic work of the media app (apps.cluster.schedules runs each app's SCHEDULES)."""

from apps.cluster.schedules import Periodic

SCHEDULES = {
    # Each node makes its announcements directory match the database: a node that was away
    # when an announcement changed catches up (apps.media.announcements).
    "Write announcements": Periodic("apps.media.announcements.write_announcements", 10),
}
