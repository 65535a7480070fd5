"""A real OpenSIPS traces a real call (SIPp → OpenSIPS → SIPp) as HEP to our listener, which
writes a pcap holding the call's INVITE…BYE that tshark reads. Skipped without OpenSIPS/SIPp."""

import threading
import time

from apps.capture import services
from apps.capture.listener import Listener, ListenerSettings
from apps.files.models import StoredFile
from tests.capture import live
from tests.capture.test_pcap import tshark_sip
from tests.factories import NodeFactory


def test_an_opensips_call_traced_with_tracer_and_proto_hep_becomes_one_pcap(db, tmp_path, settings):
    live.require_opensips()
    live.require_sipp()
    settings.CAPTURES_DIR = tmp_path / "captures"
    node = NodeFactory(name="node1")
    saved = []
    listener = Listener(ListenerSettings(port=0, linger=0.5), saved.append)
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    relay = live.start_relay(tmp_path, listener.address[1])
    try:
        assert live.call(relay, tmp_path, call_id="live-capture-%u") == 0, (tmp_path / "uac.log").read_text()
        deadline = time.monotonic() + 10
        while not saved and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        live.stop(relay.process)
        listener.stop()
        thread.join(timeout=10)

    assert [call.reason for call in saved] == ["ended"], listener.counters
    [call] = saved
    assert call.call_id == "live-capture-1"
    stored = services.save_capture(call, node)
    assert stored.kind == StoredFile.Kind.CAPTURE and stored.call_id == "live-capture-1"
    rows = tshark_sip(settings.CAPTURES_DIR / stored.relative_path)
    summary = [row.split("\t")[0] or row.split("\t")[1] for row in rows]
    # Both sides of OpenSIPS: the uac's leg and the uas's, in an order that could have happened.
    assert summary[0] == "INVITE" and summary.count("INVITE") == 2
    assert summary.index("INVITE", 1) < summary.index("180")
    assert summary.count("BYE") == 2 and summary.count("ACK") == 2
    assert summary[-1] == "200" and summary.index("BYE") < len(summary) - 1
