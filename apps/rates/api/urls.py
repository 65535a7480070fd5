from apps.rates.api import views

routes = [
    ("rate-tables", views.RateTableViewSet, "ratetable"),
    ("rates", views.RateViewSet, "rate"),
    ("time-profiles", views.TimeProfileViewSet, "timeprofile"),
]
