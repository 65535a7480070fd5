"""What one FreeSWITCH says about itself right now, in one short ESL session (the node page's view)."""

from dataclasses import dataclass, field

from engines.freeswitch.connection import ESLError, ESLUnavailable
from engines.freeswitch.esl import ESLClient
from engines.freeswitch.state import Channel, SofiaEntry, Status

CHANNELS_SHOWN = 100
# uuid_buglist is one round trip per channel: the recording state of the first ones only.
RECORDINGS_CHECKED = 20


@dataclass
class SwitchState:
    """The live state of one FreeSWITCH, or why it could not be read."""

    address: str
    unreachable: str = ""  # why nothing could be read ("" when FreeSWITCH answered)
    status: Status | None = None
    total_channels: int | None = None
    channels: list[Channel] = field(default_factory=list)
    # uuid -> the files it is being recorded to, for the channels checked.
    recordings: dict[str, list[str]] = field(default_factory=dict)
    sofia: list[SofiaEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # commands FreeSWITCH refused

    @property
    def more_channels(self) -> bool:
        return (self.total_channels or 0) > len(self.channels)

    @property
    def channel_rows(self) -> list[tuple[Channel, list[str] | None]]:
        """Each channel listed with the files it is recorded to (None: not checked)."""
        return [(channel, self.recordings.get(channel.uuid)) for channel in self.channels]


def read_switch(
    client: ESLClient, *, channels_shown: int = CHANNELS_SHOWN, recordings_checked: int = RECORDINGS_CHECKED
) -> SwitchState:
    """Ask FreeSWITCH for its status, channels (with their recordings) and SIP profiles.

    One connection; each question gets the client's timeout and the first one unanswered
    stops the rest, so a dead FreeSWITCH costs one timeout (a refused connection: none).
    """
    state = SwitchState(f"{client.host}:{client.port}")

    def read_channels() -> None:
        page = client.channels(limit=channels_shown)
        state.total_channels, state.channels = page.total, page.channels
        for channel in page.channels[:recordings_checked]:
            state.recordings[channel.uuid] = client.recordings(channel.uuid)

    questions = (
        ("status", lambda: setattr(state, "status", client.status())),
        ("show channels", read_channels),
        ("sofia xmlstatus", lambda: setattr(state, "sofia", client.sofia_status())),
    )
    try:
        with client:
            for command, ask in questions:
                try:
                    ask()
                except ESLError as exc:
                    state.errors.append(f"{command}: {exc.reply}")
    except ESLUnavailable as exc:
        state.unreachable = f"FreeSWITCH did not answer: {exc}"
    except ESLError as exc:  # a wrong password, an ACL: it answers, and refuses us
        state.unreachable = f"FreeSWITCH refused the connection: {exc}"
    return state
