from apps.routing.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("routing-plans", views.RoutingPlanViewSet, "routingplan"),
    ("routing-rules", views.RoutingRuleViewSet, "routingrule"),
    ("routes", views.RouteViewSet, "route"),
    ("quality-stats", views.QualityStatViewSet, "qualitystat"),
]
