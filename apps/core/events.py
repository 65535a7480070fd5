"""What is published to websockets when something changes (apps.core.changes), as TypedDicts.

Every committed batch of changes is sent, one event per kind, to the Channels group
CHANGES and to that kind's own group (group_for("peers.Peer") == "changes.peers.Peer"), so
a live view subscribes to everything or only to what it shows, and re-reads it. A consumer
handles the event in its method `change_announced` (Channels maps the type's dot to an
underscore). Nothing here ever fails a service: with the channel layer down, the event is
logged as lost and the service goes on.
"""

import logging
from collections.abc import Sequence
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.core.changes import Change

logger = logging.getLogger(__name__)

CHANGES = "changes"
EVENT_TYPE = "change.announced"
# Ids named in one event; beyond that the event says "some or all" (an empty list) and the
# view re-reads everything: a pasted blocklist can touch thousands of rows.
MAX_IDS = 500


class ChangeEvent(TypedDict):
    """Rows of one model changed; an empty `ids` means some or all of them."""

    type: str  # EVENT_TYPE
    kind: str  # the model's label, "peers.Peer"
    ids: list[int | str]


def group_for(kind: str) -> str:
    """The Channels group of one kind's changes."""
    return f"{CHANGES}.{kind}"


def change_event(change: Change) -> ChangeEvent:
    ids = sorted(change.ids) if len(change.ids) <= MAX_IDS else []
    return ChangeEvent(type=EVENT_TYPE, kind=change.kind, ids=ids)


def broadcast_changes(changes: Sequence[Change]) -> None:
    """After-commit consumer of apps.core.changes: send each change to its groups."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        send = async_to_sync(layer.group_send)
        for change in changes:
            event = change_event(change)
            send(CHANGES, event)
            send(group_for(change.kind), event)
    except Exception:
        # Live views are a convenience: a broadcast lost is a view that refreshes later.
        logger.warning("change events not broadcast (%s)", ", ".join(c.kind for c in changes), exc_info=True)
