from apps.cdr.api import views

routes = [("cdrs", views.CdrViewSet, "cdr")]
