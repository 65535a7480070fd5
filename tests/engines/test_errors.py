"""Every engine driver fails with an EngineError that says whether a retry can help."""

import pytest

from engines import EngineError
from engines.rsync import ChecksumMismatch, RsyncError, Target, classify


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (classify(10, "rsync: failed to connect: Connection refused", Target("/srv/copy")), True),
        (classify(24, 'file has vanished: "/srv/rec/a.wav"', Target("/srv/copy")), False),
        (RsyncError("rsync is not installed on this node.", retryable=False), False),
        (ChecksumMismatch("the remote copy differs", retryable=True), True),
    ],
)
def test_rsync_failures_are_engine_errors_that_keep_their_retryable_answer(error, retryable):
    assert isinstance(error, EngineError)
    assert error.retryable is retryable
    with pytest.raises(EngineError) as caught:
        raise error
    assert caught.value is error
