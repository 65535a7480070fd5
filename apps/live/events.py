"""What ws/live/ sends, as TypedDicts: the figures of the socket's scope, or that they are stale."""

from typing import TypedDict


class FiguresMessage(TypedDict):
    """The figures of the socket's audience changed (apps.live.figures.view)."""

    type: str  # "figures"
    at: str  # ISO time of the tick that read them
    figures: dict


class StaleMessage(TypedDict):
    """The database could not be read since `since`: the page keeps its figures, marked stale."""

    type: str  # "stale"
    since: str


def figures_message(at, figures: dict) -> FiguresMessage:
    return FiguresMessage(type="figures", at=at.isoformat(), figures=figures)


def stale_message(since) -> StaleMessage:
    return StaleMessage(type="stale", since=since.isoformat())
