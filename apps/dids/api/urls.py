from apps.dids.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("dids", views.DidViewSet, "did"),
]
