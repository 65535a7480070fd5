from django.urls import path

from apps.callcontrol.api import AnsweredView, AuthorizeView, ReleaseView

app_name = "callcontrol"

urlpatterns = [
    path("authorize", AuthorizeView.as_view(), name="authorize"),
    path("release", ReleaseView.as_view(), name="release"),
    path("answered", AnsweredView.as_view(), name="answered"),
]
