"""A three-node file-sync setup on one machine: node1 makes files, node2 and node3 each have
a real rsync daemon on a loopback port with its own tree, and a worker that runs what was
queued for a node the way its django-q2 cluster would."""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from apps.files import services
from apps.nodes.models import Node
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory
from tests.files.rsyncd import RsyncDaemon, rsync_missing


@dataclass
class SyncCluster:
    node1: Node
    node2: Node
    node3: Node
    daemons: dict[str, RsyncDaemon]
    recordings: Path  # node1's RECORDINGS_DIR
    captures: Path

    def make(self, name: str, content: bytes | None = None, *, kind: str = "recording") -> str:
        """Write a finished file on node1 and return its relative path."""
        relative = services.path_for(self.node1, name)
        root = self.recordings if kind == "recording" else self.captures
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else b"RIFF" + os.urandom(2048))
        return relative

    def copy_on(self, node: str, relative: str, directory: str = "recordings") -> Path:
        """Where `node`'s daemon keeps its copy of `relative`."""
        return self.daemons[node].root / directory / relative


def queued(cluster: str) -> list[dict]:
    """The task packages waiting in `cluster`'s django-q2 queue (ORM broker)."""
    return [row.task for row in OrmQ.objects.filter(key=cluster).order_by("pk")]


def run_queued(cluster: str) -> list:
    """Run, in order, every task queued for `cluster`, as its worker would; returns their results."""
    results = []
    while rows := list(OrmQ.objects.filter(key=cluster).order_by("pk")[:50]):
        for row in rows:
            task = row.task
            row.delete()
            results.append(import_string(task["func"])(*task["args"], **task["kwargs"]))
    return results


@pytest.fixture
def sync_cluster(transactional_db, tmp_path, settings):
    missing = rsync_missing()
    if missing:
        pytest.skip(missing)
    settings.NODE_NAME = "node1"
    settings.RECORDINGS_DIR = tmp_path / "node1" / "recordings"
    settings.CAPTURES_DIR = tmp_path / "node1" / "captures"
    settings.FILE_SYNC_TIMEOUT = 60
    settings.FILE_SYNC_IO_TIMEOUT = 10
    nodes = [NodeFactory(name=name) for name in ("node1", "node2", "node3")]
    daemons = {name: RsyncDaemon(tmp_path / name).start() for name in ("node2", "node3")}
    for node in nodes[1:]:
        services.set_node_storage(node, actor=Scope.system(), sync_target=daemons[node.name].url)
    yield SyncCluster(*nodes, daemons, settings.RECORDINGS_DIR, settings.CAPTURES_DIR)
    for daemon in daemons.values():
        daemon.stop()
