from apps.peers.api import views

# (prefix, viewset, basename), registered into the one router in smartswitch/api_urls.py.
routes = [
    ("peers", views.PeerViewSet, "peer"),
    ("endpoints", views.EndpointViewSet, "endpoint"),
    ("gateways", views.GatewayViewSet, "gateway"),
    ("sip-accounts", views.SipAccountViewSet, "sipaccount"),
    ("registrations", views.RegistrationViewSet, "registration"),
]
