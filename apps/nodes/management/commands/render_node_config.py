"""Write a node's engine configuration files, rendered from the database."""

import os
import tempfile
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.nodes.models import Node
from apps.nodes.rendering import render_node
from apps.opensips import dialogs


class Command(BaseCommand):
    help = "Render one node's configuration files (OpenSIPS, Galera…) into a directory."

    def add_arguments(self, parser):
        parser.add_argument("--node", required=True, help="The node's name (admin: Nodes).")
        parser.add_argument("--out", required=True, type=Path, help="Directory to write into.")

    def handle(self, *args, node: str, out: Path, **options):
        try:
            target = Node.objects.get(name=node)
        except Node.DoesNotExist:
            known = ", ".join(Node.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No node named {node!r} (known: {known}).") from None
        # Its OpenSIPS keeps its live calls in a table of its own: made before it starts (data
        # definition, which would commit a caller's transaction: after it, if there is one).
        transaction.on_commit(partial(dialogs.ensure_table, target.pk))
        files = render_node(target)
        for relative, content in sorted(files.items()):
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside the target and renamed over it: an engine restarting meanwhile
            # reads the old file or the new one, never half of one.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.chmod(temporary, 0o640)
            os.replace(temporary, path)
            self.stdout.write(str(path))
