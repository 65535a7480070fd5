from django.apps import AppConfig, apps
from django.db import transaction
from django.db.models.signals import post_migrate, post_save


def _node_saved(sender, instance, **kwargs) -> None:
    # A node added, enabled or disabled gets (or loses) its schedule rows once the change
    # is committed; the other nodes' rows are untouched.
    from apps.cluster.schedules import ensure_all

    transaction.on_commit(ensure_all)


def _migrated(**kwargs) -> None:
    from apps.cluster.schedules import ensure_all

    ensure_all()


class ClusterConfig(AppConfig):
    name = "apps.cluster"
    verbose_name = "Cluster"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from apps.cluster.presence import start_heartbeat

        # Every app's SCHEDULES (apps.<app>.tasks), after django_q's own migrate so that its
        # schedule table exists.
        post_migrate.connect(
            _migrated, sender=apps.get_app_config("django_q"), dispatch_uid="cluster-schedules"
        )
        post_save.connect(
            _node_saved, sender=apps.get_model("nodes", "Node"), dispatch_uid="cluster-node-schedules"
        )
        # Every qcluster worker of this node starts the heartbeat thread (apps.cluster.presence).
        post_spawn.connect(start_heartbeat, dispatch_uid="cluster-heartbeat")
