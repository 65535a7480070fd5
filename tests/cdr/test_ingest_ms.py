"""A CDR's times are exact to the millisecond where the config wrote setup_ms and answer_ms.

acc's `time` and `created` are whole seconds; `setup_ms` (the INVITE's arrival) and
`answer_ms` (the first 200 OK) are Unix epoch milliseconds, NULL in rows of an older config.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.billing.services import rating
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.opensips.models import Acc, MissedCall
from tests.cdr.test_ingest import our_columns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

# An hour ago, cut to the second as acc writes `time`: priced on any date (see test_ingest).
ANSWER = timezone.now().replace(microsecond=0) - timedelta(hours=1)
ANSWERED_EXACTLY = ANSWER + 437 * MS
INVITED_EXACTLY = ANSWER - 1155 * MS  # in the second before: acc's setuptime says 2


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // MS


def answered_row(world, **fields) -> Acc:
    values = {
        "sip_code": "200",
        "sip_reason": "OK",
        "time": ANSWER,
        "setuptime": 2,
        "created": ANSWER - timedelta(seconds=2),
        "duration": 62,
        "ms_duration": 61_250,
    }
    return Acc.objects.create(**our_columns(world), **(values | fields))


def test_an_answered_call_has_its_times_to_the_millisecond(world):
    answered_row(world, setup_ms=epoch_ms(INVITED_EXACTLY), answer_ms=epoch_ms(ANSWERED_EXACTLY))
    result = ingest.ingest_batch()
    assert (result.calls, result.errors) == (1, 0)
    cdr = Cdr.objects.get()  # read back: the database keeps the milliseconds
    assert (cdr.created_at, cdr.answered_at, cdr.ended_at, cdr.duration_ms) == (
        INVITED_EXACTLY,
        ANSWERED_EXACTLY,
        ANSWERED_EXACTLY + 61_250 * MS,
        61_250,
    )
    cdr.full_clean()
    assert rating.rate_batch().rated == 1


def test_an_answer_stamped_by_a_lagging_second_takes_its_second_from_acc(world):
    # The config's seconds come from time(), which can still say the previous second for a
    # tick after the boundary that gettimeofday() (its milliseconds, acc's `time`) has passed.
    lagging = ANSWER - timedelta(seconds=1) + 3 * MS
    answered_row(world, setup_ms=epoch_ms(INVITED_EXACTLY), answer_ms=epoch_ms(lagging))
    assert ingest.ingest_batch().errors == 0
    assert Cdr.objects.get().answered_at == ANSWER + 3 * MS


def test_a_failed_call_and_its_attempt_start_at_the_exact_invite(world):
    common = {"time": ANSWER, "setuptime": 0, "setup_ms": epoch_ms(INVITED_EXACTLY)}
    MissedCall.objects.create(**our_columns(world, "Alpha"), sip_code="503", sip_reason="Busy", **common)
    Acc.objects.create(**our_columns(world, "Alpha"), sip_code="503", sip_reason="Busy", **common)
    result = ingest.ingest_batch()
    assert (result.calls, result.attempts, result.errors) == (1, 1, 0)
    for cdr in Cdr.objects.all():
        # No exact time of the final reply: its whole second, as before.
        assert (cdr.created_at, cdr.answered_at, cdr.ended_at, cdr.duration_ms) == (
            INVITED_EXACTLY,
            None,
            ANSWER,
            0,
        )
        cdr.clean()  # the time invariants (an attempt has no customer, by design)


def test_a_rejection_in_the_invites_own_second_does_not_end_before_it_starts(world):
    invited = ANSWER + 300 * MS  # `time` is cut to ANSWER, before the exact INVITE
    Acc.objects.create(**our_columns(world), sip_code="403", time=ANSWER, setup_ms=epoch_ms(invited))
    assert ingest.ingest_batch().errors == 0
    cdr = Cdr.objects.get()
    assert (cdr.created_at, cdr.ended_at) == (invited, invited)
    cdr.full_clean()


def test_rows_of_a_config_without_the_columns_map_from_whole_seconds(world):
    answered_row(world)
    Acc.objects.create(**our_columns(world, callid="failed@pbx"), sip_code="486", time=ANSWER, setuptime=4)
    assert ingest.ingest_batch().errors == 0
    answered = Cdr.objects.get(sip_code=200)
    assert (answered.created_at, answered.answered_at, answered.ended_at) == (
        ANSWER - timedelta(seconds=2),
        ANSWER,
        ANSWER + 61_250 * MS,
    )
    failed = Cdr.objects.get(sip_code=486)
    assert (failed.created_at, failed.answered_at, failed.ended_at) == (
        ANSWER - timedelta(seconds=4),
        None,
        ANSWER,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"setup_ms": -1}, "setup_ms -1 is not epoch milliseconds"),
        ({"answer_ms": epoch_ms(ANSWER) // 1000}, "answer_ms"),  # seconds, not ms
        ({"answer_ms": epoch_ms(ANSWER) * 1000}, "answer_ms"),  # microseconds
        ({"setup_ms": 2**63 - 1}, "setup_ms"),  # BIGINT's largest: past any datetime
        (
            {"setup_ms": epoch_ms(ANSWERED_EXACTLY) + 1, "answer_ms": epoch_ms(ANSWERED_EXACTLY)},
            "is after the answer",
        ),
    ],
    ids=["negative", "seconds", "microseconds", "largest", "setup-after-answer"],
)
def test_an_implausible_exact_time_is_a_rating_error_and_the_call_is_kept(world, fields, reason):
    answered_row(world, **fields)
    result = ingest.ingest_batch()
    assert (result.calls, result.errors) == (1, 1)
    assert not Acc.objects.exists()
    cdr = Cdr.objects.get()
    assert cdr.rating_state == Cdr.RatingState.ERROR and reason in cdr.rating_error
    # The whole seconds stand in for the value refused; a valid exact answer is kept.
    answered = ANSWERED_EXACTLY if "answer_ms" in fields and "setup_ms" in fields else ANSWER
    assert (cdr.created_at, cdr.answered_at, cdr.ended_at, cdr.duration_ms) == (
        ANSWER - timedelta(seconds=2),
        answered,
        answered + 61_250 * MS,
        61_250,
    )
    cdr.full_clean()


def test_the_post_dial_delay_runs_from_the_invite_to_the_first_ring(world):
    rang = INVITED_EXACTLY + 830 * MS
    answered_row(
        world,
        setup_ms=epoch_ms(INVITED_EXACTLY),
        ring_ms=epoch_ms(rang),
        answer_ms=epoch_ms(ANSWERED_EXACTLY),
    )
    assert ingest.ingest_batch().errors == 0
    assert Cdr.objects.get().pdd_ms == 830


@pytest.mark.parametrize(
    "ring",
    [
        None,  # a config before ring_ms, or a call that neither rang nor was answered
        -1,  # before the INVITE: a clock fault
        ingest.MAX_POST_DIAL_DELAY_MS + 1,  # no delay is that long
    ],
)
def test_an_unknown_or_odd_ring_time_leaves_no_delay_and_is_no_rating_error(world, ring):
    setup = epoch_ms(INVITED_EXACTLY)
    answered_row(
        world,
        setup_ms=setup,
        ring_ms=None if ring is None else setup + ring,
        answer_ms=epoch_ms(ANSWERED_EXACTLY),
    )
    assert ingest.ingest_batch().errors == 0
    assert Cdr.objects.get().pdd_ms is None


def test_a_failed_call_that_rang_keeps_its_delay(world):
    common = {"time": ANSWER, "setuptime": 0, "setup_ms": epoch_ms(INVITED_EXACTLY)}
    Acc.objects.create(
        **our_columns(world),
        sip_code="487",
        sip_reason="Request Terminated",
        ring_ms=epoch_ms(INVITED_EXACTLY) + 2_400,
        **common,
    )
    assert ingest.ingest_batch().errors == 0
    assert Cdr.objects.get().pdd_ms == 2_400


def test_a_failed_branch_rated_as_it_is_imported_is_in_the_reports_like_a_rebuild_says(world):
    from tests.reports.test_rollups import assert_rollups_match

    common = {"time": ANSWER, "setuptime": 0, "setup_ms": epoch_ms(INVITED_EXACTLY)}
    MissedCall.objects.create(**our_columns(world, "Alpha"), sip_code="503", sip_reason="Busy", **common)
    answered_row(world, setup_ms=epoch_ms(INVITED_EXACTLY), answer_ms=epoch_ms(ANSWERED_EXACTLY))
    assert ingest.ingest_batch().attempts == 1
    rating.rate_all()

    # The attempt (rated at import) and the call (rated by the rater) are both summed, as
    # rebuild_rollups would sum them from the CDRs.
    assert Cdr.objects.filter(rating_state=Cdr.RatingState.RATED).count() == 2
    assert_rollups_match()
