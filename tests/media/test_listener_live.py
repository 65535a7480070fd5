"""The node's listener against a real FreeSWITCH (skipped, saying why, where none is
installed): a call recorded below the node's recordings directory is registered for file
sync when FreeSWITCH closes the file, before and after FreeSWITCH restarts."""

import threading
import time

import pytest

from apps.files.models import StoredFile
from apps.media.listener import NodeListener
from tests.engines.replies.freeswitch.live import PASSWORD, freeswitch  # noqa: F401 - the fixture
from tests.factories import NodeFactory


def wait_for(condition, seconds: float = 15.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds}s")


def record_a_call(freeswitch, uuid: str, call_id: str, path) -> None:  # noqa: F811
    freeswitch.call(uuid, call_id=call_id)
    esl = freeswitch.client()
    esl.start_recording(uuid, str(path))
    time.sleep(0.5)
    esl.hang_up(uuid)  # the recording stops with the call: RECORD_STOP


@pytest.mark.django_db(transaction=True)
def test_a_recorded_call_is_registered_before_and_after_a_freeswitch_restart(freeswitch, settings):  # noqa: F811
    settings.RECORDINGS_DIR = freeswitch.recordings
    node = NodeFactory(
        name="node1", management_address="127.0.0.1", esl_port=freeswitch.esl_port, esl_password=PASSWORD
    )
    listener = NodeListener(
        node, broadcast=lambda changes: None, backoff_first=0.2, backoff_most=1, poll=0.05
    )
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: listener.listener.connections == 1, what="subscribed")
        first = freeswitch.recordings / "node1" / "2026" / "03" / "02" / "first.wav"
        record_a_call(freeswitch, "9d2c1f3e-0000-4000-8000-000000000001", "first@pbx", first)
        wait_for(lambda: StoredFile.objects.filter(call_id="first@pbx").exists(), what="first registered")

        freeswitch.restart()
        wait_for(lambda: listener.listener.connections == 2, seconds=30, what="back after the restart")
        second = freeswitch.recordings / "node1" / "2026" / "03" / "02" / "second.wav"
        record_a_call(freeswitch, "9d2c1f3e-0000-4000-8000-000000000002", "second@pbx", second)
        wait_for(lambda: StoredFile.objects.filter(call_id="second@pbx").exists(), what="second registered")
    finally:
        listener.stop()
        thread.join(10)
    rows = {row.call_id: row for row in StoredFile.objects.all()}
    assert rows["first@pbx"].relative_path == "node1/2026/03/02/first.wav"
    assert rows["second@pbx"].size == second.stat().st_size > 44
    assert (rows["first@pbx"].origin, rows["first@pbx"].kind) == (node, StoredFile.Kind.RECORDING)
