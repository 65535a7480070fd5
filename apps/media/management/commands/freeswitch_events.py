"""Listen to this node's FreeSWITCH until SIGTERM: recordings registered, live views told."""

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.media.listener import NodeListener
from apps.nodes.models import Node


class Command(BaseCommand):
    help = (
        "Subscribe to this node's FreeSWITCH events over ESL (management address, esl_port, "
        "esl_password) and keep doing so across FreeSWITCH restarts until SIGTERM: each "
        "RECORD_STOP registers its recording for file sync, each call event tells the node "
        "page's live view. One per node, run by systemd (smartswitch-freeswitch-events)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--node", default=None, help="Node name (default: NODE_NAME).")

    def handle(self, *args, **options):
        name = options["node"] or settings.NODE_NAME
        node = Node.objects.filter(name=name).first()
        if node is None:
            raise CommandError(f"No node named {name!r}: add it first, or set NODE_NAME.")
        if not node.media_enabled:
            # Not an error: systemd must not restart it in a loop. Start it again when media is on.
            self.stdout.write(f"{name} runs no FreeSWITCH (media is off): nothing to listen to.")
            return
        logging.getLogger("engines.freeswitch").setLevel(logging.INFO)
        listener = NodeListener(node)
        previous = {
            sig: signal.signal(sig, lambda *_: listener.stop()) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        self.stdout.write(f"{name}: listening to FreeSWITCH at {node.management_address}:{node.esl_port}")
        try:
            listener.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(
            f"{name}: stopped; {listener.events.recorded} recordings registered, "
            f"{listener.queue.dropped} events dropped"
        )
