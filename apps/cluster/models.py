"""What each node last said about itself, and the leases that keep cluster-wide work single."""

from django.db import models

from apps.nodes.models import Node


class NodeStatus(models.Model):
    """The state a node's worker last reported: when, and its own Galera member's view."""

    node = models.OneToOneField(Node, on_delete=models.CASCADE, related_name="status")
    reported_at = models.DateTimeField()
    # hostname:pid of the worker process that beat last, to tell a restarted worker apart.
    reporter = models.CharField(max_length=100, blank=True)
    # False: the node's database is no Galera member (SQLite, PostgreSQL, plain MariaDB).
    galera_member = models.BooleanField(default=False)
    galera_cluster_size = models.PositiveIntegerField(null=True, blank=True)
    galera_local_state = models.CharField(max_length=40, blank=True)  # wsrep_local_state_comment
    galera_ready = models.BooleanField(null=True, blank=True)  # wsrep_ready
    galera_cluster_status = models.CharField(max_length=40, blank=True)  # Primary / non-Primary
    # The Galera query itself failed (the member refuses reads while it is not synced).
    galera_error = models.CharField(max_length=200, blank=True)
    # Whether the node has OpenSIPS installed, as its worker found (apps.cluster.presence);
    # NULL until a worker that looks has beaten. A node without it (a demo or a web-only
    # machine) has nothing to reload: its reloads are not tried, nor retried.
    opensips_installed = models.BooleanField(null=True, blank=True)

    class Meta:
        verbose_name = "node status"
        # The admin index links the status page (apps.cluster.admin) by this name.
        verbose_name_plural = "cluster status"

    def __str__(self) -> str:
        return f"{self.node} at {self.reported_at:%Y-%m-%d %H:%M:%S}"


class Lease(models.Model):
    """A named right to do cluster-wide work, held by one node until it expires."""

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField()
    # Renewed (or taken over) by every node's heartbeat, not only when its task runs, so that
    # the holder is always a live node and a dead holder is replaced within one TTL.
    follows_heartbeat = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"
