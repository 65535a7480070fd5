from django.urls import path

from apps.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("calls/", views.cdrs, name="cdrs"),
    path("calls/<int:pk>/", views.call, name="call"),
    path("calls/<int:pk>/recordings/<int:file_id>/", views.call_recording, name="call-recording"),
    path("numbers/", views.numbers, name="numbers"),
    path("numbers/<int:pk>/", views.number, name="number"),
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", views.PortalLogoutView.as_view(), name="logout"),
]
