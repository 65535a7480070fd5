"""FreeSWITCH over its event socket (ESL): commands with deadlines, and an event listener.

Built on greenswitch (gevent); connection.py says what it lacks and what is added here.
"""

from engines.freeswitch.connection import ESLError, ESLUnavailable, NoSuchChannel
from engines.freeswitch.esl import DEFAULT_PORT, CallEnd, ESLClient
from engines.freeswitch.events import (
    CHANNEL_EVENTS,
    ConnectionState,
    Event,
    EventListener,
    EventQueue,
    read_event,
)
from engines.freeswitch.snapshot import SwitchState, read_switch
from engines.freeswitch.state import (
    Channel,
    ChannelPage,
    SofiaEntry,
    SofiaGateway,
    SofiaProfile,
    Status,
)

__all__ = [
    "CHANNEL_EVENTS",
    "DEFAULT_PORT",
    "CallEnd",
    "Channel",
    "ChannelPage",
    "ConnectionState",
    "ESLClient",
    "ESLError",
    "ESLUnavailable",
    "Event",
    "EventListener",
    "EventQueue",
    "NoSuchChannel",
    "SofiaEntry",
    "SofiaGateway",
    "SofiaProfile",
    "Status",
    "SwitchState",
    "read_event",
    "read_switch",
]
