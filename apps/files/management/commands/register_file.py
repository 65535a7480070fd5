"""Register a finished recording or capture of this node and queue its push to the others."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import DomainError
from apps.files import services
from apps.files.models import StoredFile
from apps.nodes.models import Node


class Command(BaseCommand):
    help = (
        "Register a finished file under RECORDINGS_DIR or CAPTURES_DIR; this node's task queue "
        "then pushes it to every other enabled node."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", type=Path, help="The file: absolute, or relative to the kind's directory."
        )
        parser.add_argument("--kind", choices=StoredFile.Kind.values, default=StoredFile.Kind.RECORDING)
        parser.add_argument("--node", default=None, help="Origin node (default: NODE_NAME of this node).")
        parser.add_argument("--call-id", default="", help="SIP Call-ID of the call the file belongs to.")

    def handle(self, *args, path: Path, kind: str, node: str | None, call_id: str, **options):
        name = node or settings.NODE_NAME
        origin = Node.objects.filter(name=name).first()
        if origin is None:
            raise CommandError(f"--node: no node named {name!r}.")
        root = services.kind_root(kind).resolve()
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(root)
            except ValueError:
                raise CommandError(f"path: {path} is not below the {kind} directory {root}.") from None
        try:
            stored = services.register_file(
                kind=kind, relative_path=path.as_posix(), origin=origin, call_id=call_id
            )
        except DomainError as exc:
            raise CommandError(f"{exc.field or 'path'}: {exc.message}") from None
        others = stored.copies.exclude(node=origin).count()
        self.stdout.write(
            f"file {stored.pk}: {stored.relative_path} ({stored.size} bytes), queued to {others} node(s)"
        )
