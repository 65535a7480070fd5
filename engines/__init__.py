"""Drivers for the engines a node runs: OpenSIPS (MI), FreeSWITCH (ESL) and rsync.

Plain Python: no Django models are imported here. Drivers take and return dataclasses,
do their I/O with explicit timeouts, and raise EngineError saying whether a retry can help.
"""


class EngineError(Exception):
    """An engine did not do what was asked; `retryable` tells whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
