from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


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
        # A node added, enabled or disabled: apps.cluster.schedules.nodes_changed, a consumer
        # of the changes the node services announce (apps.core.changes).

        # Every qcluster worker of this node starts the heartbeat thread (apps.cluster.presence).
        post_spawn.connect(start_heartbeat, dispatch_uid="cluster-heartbeat")
