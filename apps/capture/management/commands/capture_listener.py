"""Run this node's HEP capture listener until SIGTERM (deploy: one systemd unit per node)."""

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.capture.listener import Listener, ListenerSettings
from apps.capture.services import save_capture
from apps.nodes.models import Node

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Receive HEPv3 from OpenSIPS and FreeSWITCH and write a pcap per captured call."

    def add_arguments(self, parser):
        parser.add_argument("--address", help="Listen here instead of CAPTURE_HEP_ADDRESS.")
        parser.add_argument("--port", type=int, help="Listen here instead of CAPTURE_HEP_PORT.")

    def handle(self, *args, **options):
        origin = Node.objects.filter(name=settings.NODE_NAME).first()
        if origin is None:
            raise CommandError(f"No node is named {settings.NODE_NAME!r} (NODE_NAME): add it first.")
        config = ListenerSettings.from_django()
        overrides = {k: options[k] for k in ("address", "port") if options.get(k) is not None}
        config = ListenerSettings(**{**config.__dict__, **overrides})
        listener = Listener(config, lambda call: save_capture(call, origin))
        signal.signal(signal.SIGTERM, lambda *_: listener.stop())
        signal.signal(signal.SIGINT, lambda *_: listener.stop())
        host, port = listener.address
        self.stdout.write(f"capture listener on {host}:{port} for {origin.name}", ending="\n")
        self.stdout.flush()
        listener.serve()
        counters = listener.counters
        self.stdout.write(
            f"capture listener stopped: {counters.received} received, {counters.written} written, "
            f"{counters.malformed} malformed, {counters.queue_full} dropped, {counters.write_errors} errors"
        )
