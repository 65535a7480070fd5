from apps.bundles.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("bundles", views.BundleViewSet, "bundle"),
    ("bundle-subscriptions", views.SubscriptionViewSet, "bundle-subscription"),
    ("bundle-usage", views.UsageViewSet, "bundle-usage"),
]
