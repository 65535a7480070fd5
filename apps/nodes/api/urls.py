from apps.nodes.api import views

routes = [("nodes", views.NodeViewSet, "node")]
