from apps.fraud.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("controllers", views.ControllerViewSet, "controller"),
    ("alerts", views.AlertViewSet, "alert"),
]
