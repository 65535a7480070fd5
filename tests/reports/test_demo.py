"""The demo's calls reach the reports: `loaddemo` rates them and the rollups hold them."""

import io

import pytest
from django.core.management import call_command
from django.db.models import Sum

from apps.cdr.models import Cdr
from apps.reports.models import TrafficRollup
from tests.reports.test_rollups import assert_rollups_match


@pytest.mark.django_db
def test_the_demo_calls_are_in_the_rollups_with_destinations_and_post_dial_delays(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("loaddemo", cdrs=60, stdout=io.StringIO())

    rated = Cdr.objects.filter(rating_state=Cdr.RatingState.RATED)
    assert rated.count() == 60
    assert not rated.filter(destination="").exists()
    assert not rated.filter(answered_at__isnull=False, pdd_ms__isnull=True).exists()
    assert not rated.filter(sip_code__in=(403, 404, 503), pdd_ms__isnull=False).exists()
    assert_rollups_match()
    assert TrafficRollup.objects.filter(grain="day", shape="full").aggregate(n=Sum("attempts"))["n"] == 60
