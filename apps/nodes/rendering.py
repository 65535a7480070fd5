"""The files a node's engines read, rendered from the database.

Each engine contributes a renderer: a function taking the node and the cluster settings
and returning `{relative path: file content}`. `render_node_config` writes them all; the
deploy guide says where each file goes on a node.
"""

from django.utils.module_loading import import_string

from apps.nodes.models import ClusterSettings, Node

RENDERERS = (
    "apps.opensips.config.render",
    "apps.media.config.render",
    "apps.cluster.galera.render",
    "apps.cluster.keepalived.render",
)


def render_node(node: Node) -> dict[str, str]:
    """Every file of `node`, by path relative to the output directory."""
    cluster = ClusterSettings.load()
    files: dict[str, str] = {}
    for path in RENDERERS:
        rendered = import_string(path)(node, cluster)
        clash = files.keys() & rendered.keys()
        if clash:
            raise ValueError(f"{path} renders {sorted(clash)} a second time")
        files.update(rendered)
    return files
