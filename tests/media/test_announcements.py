"""Announcements: what an upload must be, which refusal plays which, and the files on a node."""

import io
import math
import re
import struct
import wave
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEntry
from apps.core import changes
from apps.core.errors import Conflict
from apps.media import announcements
from apps.media.announcements import announcement_for, announcement_map, refusal_kind, write_announcements
from apps.media.models import Announcement, AnnouncementRule, RefusalKind, inspect_audio
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, listed
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db

SYSTEM = Scope.system()
ANNOUNCED: list = []


def record(batch) -> None:
    """An after-commit consumer for these tests: keeps every change it is given."""
    ANNOUNCED.extend(batch)


@pytest.fixture
def announced(monkeypatch, django_capture_on_commit_callbacks):
    """`with announced() as seen:` the changes announced by what runs inside, once committed."""
    monkeypatch.setattr(changes, "AFTER_COMMIT", (*changes.AFTER_COMMIT, f"{__name__}.record"))

    @contextmanager
    def capture():
        ANNOUNCED.clear()
        seen: dict[str, set] = {}
        with django_capture_on_commit_callbacks(execute=True):
            yield seen
        for change in ANNOUNCED:
            seen.setdefault(change.kind, set()).update(change.ids)
        ANNOUNCED.clear()

    return capture


def wav(seconds: float = 1.0, *, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """A tone as WAV bytes, in the format asked for."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        count = int(seconds * rate)
        if width == 2:
            frames = b"".join(struct.pack("<h", int(8000 * math.sin(n / 3))) * channels for n in range(count))
        else:
            frames = bytes([128]) * count * channels
        out.writeframes(frames)
    return buffer.getvalue()


def alaw_wav() -> bytes:
    """A WAV file of A-law audio (format tag 6), which Python's wave module refuses to read."""
    data = b"\xd5" * 800
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- what an upload must be --------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
def test_mono_16_bit_pcm_at_8_or_16_khz_is_accepted(rate):
    info = inspect_audio(wav(2.5, rate=rate))
    assert (info.sample_rate, info.duration_ms) == (rate, 2500)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (wav(channels=2), "2 channels (use mono)"),
        (wav(rate=44100), "44100 Hz (use 8000 or 16000 Hz)"),
        (wav(width=1), "8-bit samples (use 16-bit PCM)"),
        (b"ID3 this is an mp3", "Not a WAV file of PCM audio"),
        (alaw_wav(), "Not a WAV file of PCM audio"),
        (wav(0), "holds no audio"),
    ],
)
def test_other_audio_is_refused_saying_what_is_wrong(data, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        inspect_audio(data)


def test_too_long_or_too_large_is_refused(settings):
    settings.ANNOUNCEMENT_MAX_SECONDS = 2
    with pytest.raises(ValidationError, match=r"lasts 3\.0 s; at most 2 s"):
        inspect_audio(wav(3))
    settings.ANNOUNCEMENT_MAX_BYTES = 1000
    with pytest.raises(ValidationError, match="at most 1,000 are accepted"):
        inspect_audio(wav(1))


# --- the write path ----------------------------------------------------------------------


def test_an_announcement_keeps_its_audio_and_is_audited_and_announced(announced):
    with announced() as seen:
        announcement = announcements.create_announcement(name="No money", audio=wav(1.5), actor=SYSTEM)

    stored = Announcement.objects.get()
    assert bytes(stored.audio) == wav(1.5)
    assert (stored.duration_ms, stored.sample_rate, stored.size) == (1500, 8000, len(wav(1.5)))
    assert stored.file_name == f"no-money-{stored.sha256[:12]}.wav"
    assert AuditEntry.objects.filter(action="announcement.created").count() == 1
    assert seen["media.Announcement"] == {announcement.pk}


def test_an_unplayable_upload_is_refused_and_nothing_is_kept():
    with pytest.raises(ValidationError):
        announcements.create_announcement(name="Bad", audio=wav(channels=2), actor=SYSTEM)
    assert not Announcement.objects.exists()


def test_new_audio_is_a_new_file_name():
    announcement = announcements.create_announcement(name="No money", audio=wav(1), actor=SYSTEM)
    before = announcement.file_name
    announcements.update_announcement(announcement, audio=wav(2), actor=SYSTEM)
    assert announcement.file_name != before
    assert announcement.duration_ms == 2000


def test_an_announcement_a_rule_plays_cannot_be_deleted():
    announcement = announcements.create_announcement(name="No money", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, announcement, actor=SYSTEM)
    with pytest.raises(Conflict, match="played by 1 rule"):
        announcements.delete_announcement(announcement, actor=SYSTEM)
    AnnouncementRule.objects.all().delete()
    announcements.delete_announcement(announcement, actor=SYSTEM)
    assert not Announcement.objects.exists()


def test_one_cluster_wide_rule_per_refusal_and_it_names_an_announcement():
    first = announcements.create_announcement(name="One", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.NO_ROUTE, first, actor=SYSTEM)
    duplicate = AnnouncementRule(kind=RefusalKind.NO_ROUTE, announcement=first)
    with pytest.raises(ValidationError, match="already a rule"):
        announcements.save_rule(duplicate, actor=SYSTEM)
    with pytest.raises(ValidationError, match="names its announcement"):
        announcements.set_rule(RefusalKind.BLOCKED, None, actor=SYSTEM)


def test_setting_a_rule_again_changes_it_and_is_announced(announced, cast):
    one = announcements.create_announcement(name="One", audio=wav(), actor=SYSTEM)
    two = announcements.create_announcement(name="Two", audio=wav(2), actor=SYSTEM)
    announcements.set_rule(RefusalKind.BLOCKED, one, peer=cast.a.customer, actor=SYSTEM)
    with announced() as seen:
        rule = announcements.set_rule(RefusalKind.BLOCKED, two, peer=cast.a.customer, actor=SYSTEM)
    assert AnnouncementRule.objects.get().announcement == two
    assert seen["media.AnnouncementRule"] == {rule.pk}


# --- what call control reads -------------------------------------------------------------


def test_the_map_gives_the_cluster_rule_and_each_peers_override(cast):
    money = announcements.create_announcement(name="No money", audio=wav(), actor=SYSTEM)
    theirs = announcements.create_announcement(name="Pay up", audio=wav(2), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, money, actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, theirs, peer=cast.a.customer, actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, None, peer=cast.b.customer, actor=SYSTEM)

    mapping = announcement_map()

    assert mapping == {
        (None, "insufficient_funds"): money.file_name,
        (cast.a.customer.pk, "insufficient_funds"): theirs.file_name,
        (cast.b.customer.pk, "insufficient_funds"): "",
    }
    kind = refusal_kind("money", 402)
    assert announcement_for(mapping, cast.a.customer.pk, kind) == theirs.file_name
    assert announcement_for(mapping, cast.b.customer.pk, kind) is None  # silenced for B
    assert announcement_for(mapping, cast.operator_customer.pk, kind) == money.file_name
    assert announcement_for(mapping, None, kind) == money.file_name
    assert announcement_for(mapping, cast.a.customer.pk, refusal_kind("routes", 503)) is None


def test_the_map_is_one_query_without_the_audio(django_assert_num_queries):
    for n in range(3):
        announcement = announcements.create_announcement(name=f"A{n}", audio=wav(), actor=SYSTEM)
        announcements.set_rule(list(RefusalKind)[n], announcement, actor=SYSTEM)
    with django_assert_num_queries(1) as queries:
        assert len(announcement_map()) == 3
    assert "audio" not in queries.captured_queries[0]["sql"]


@pytest.mark.parametrize(
    ("step", "code", "kind"),
    [
        ("money", 402, "insufficient_funds"),
        ("money", 486, "too_many_calls"),
        ("routing", 503, "no_route"),
        ("sell rate", 404, "no_route"),
        ("blocklists", 403, "blocked"),
        ("routing", 403, "blocked"),
        ("status", 403, "suspended"),
        ("DID", 404, "not_in_service"),
        ("on-net", 480, "unavailable"),
        ("identify", 403, None),
        ("node", 503, None),
    ],
)
def test_call_control_rejections_map_to_refusal_kinds(step, code, kind):
    assert refusal_kind(step, code) == kind


def test_every_refusal_kind_is_reached_by_some_rejection():
    assert set(announcements.REFUSALS.values()) == set(RefusalKind)


def test_writers_announce_kinds_the_snapshot_can_name():
    # A misspelt kind would fail in changes.announce; both are real models.
    for kind in ("media.Announcement", "media.AnnouncementRule"):
        changes.announce(kind, [])


# --- the files on a node ------------------------------------------------------------------


def test_write_announcements_makes_the_directory_match_and_is_idempotent(tmp_path):
    one = announcements.create_announcement(name="One", audio=wav(1), actor=SYSTEM)
    two = announcements.create_announcement(name="Two", audio=wav(2), actor=SYSTEM)
    (tmp_path / "stale-0123456789ab.wav").write_bytes(b"old")
    (tmp_path / "README").write_text("not ours")

    first = write_announcements(tmp_path)
    again = write_announcements(tmp_path)

    assert set(first.written) == {one.file_name, two.file_name}
    assert first.removed == ("stale-0123456789ab.wav",)
    assert (tmp_path / one.file_name).read_bytes() == wav(1)
    assert (tmp_path / "README").exists()
    assert (again.written, again.removed, again.kept) == ((), (), 2)
    assert {path.name for path in tmp_path.iterdir()} == {one.file_name, two.file_name, "README"}


def test_replaced_audio_replaces_the_file_on_the_node(tmp_path):
    announcement = announcements.create_announcement(name="One", audio=wav(1), actor=SYSTEM)
    write_announcements(tmp_path)
    old = announcement.file_name
    announcements.update_announcement(announcement, audio=wav(2), actor=SYSTEM)

    result = write_announcements(tmp_path)

    assert result.written == (announcement.file_name,) and result.removed == (old,)


def test_a_change_queues_the_write_on_every_enabled_node(monkeypatch, django_capture_on_commit_callbacks):
    NodeFactory(name="edge1")
    NodeFactory(name="edge2")
    NodeFactory(name="off", enabled=False)
    sent = []
    monkeypatch.setattr(announcements, "try_send_to_node", lambda node, func: sent.append((node, func)))
    with django_capture_on_commit_callbacks(execute=True):
        announcements.create_announcement(name="One", audio=wav(), actor=SYSTEM)
    assert sent == [("edge1", announcements.WRITE_TASK), ("edge2", announcements.WRITE_TASK)]


def test_the_command_writes_into_the_announcements_directory(settings, tmp_path, capsys):
    settings.ANNOUNCEMENTS_DIR = tmp_path / "announcements"
    announcement = announcements.create_announcement(name="One", audio=wav(), actor=SYSTEM)
    call_command("write_announcements")
    assert (tmp_path / "announcements" / announcement.file_name).exists()
    assert "1 written, 0 removed, 0 already there" in capsys.readouterr().out


# --- the admin: the operator's only ---------------------------------------------------------


def test_the_operator_uploads_an_announcement_in_the_admin(cast, login):
    client = login(cast.operator)
    upload = SimpleUploadedFile("no-money.wav", wav(1.2), content_type="audio/wav")
    response = client.post(admin_url(Announcement, "add"), {"name": "No money", "upload": upload})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Announcement.objects.get().duration_ms == 1200


def test_an_unplayable_upload_is_refused_in_the_admin_with_the_reason(cast, login):
    client = login(cast.operator)
    upload = SimpleUploadedFile("song.wav", wav(channels=2), content_type="audio/wav")
    response = client.post(admin_url(Announcement, "add"), {"name": "Song", "upload": upload})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["upload"] == ["The WAV file has 2 channels (use mono)."]
    assert not Announcement.objects.exists()


def test_the_operator_sets_a_rule_in_the_admin(cast, login):
    announcement = announcements.create_announcement(name="No money", audio=wav(), actor=SYSTEM)
    client = login(cast.operator)
    data = {"kind": "insufficient_funds", "peer": cast.a.customer.pk, "announcement": announcement.pk}
    assert client.post(admin_url(AnnouncementRule, "add"), data).status_code == 302
    assert listed(client.get(admin_url(AnnouncementRule, "changelist"))) == {
        AnnouncementRule.objects.get().pk
    }


@pytest.mark.parametrize("model", [Announcement, AnnouncementRule])
def test_reseller_staff_and_customers_cannot_manage_announcements(model, cast, login):
    announcement = announcements.create_announcement(name="No money", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, announcement, peer=cast.a.customer, actor=SYSTEM)
    obj = model.objects.get()
    staff = login(cast.a.staff)
    assert staff.get(admin_url(model, "changelist")).status_code == 403
    assert staff.get(admin_url(obj)).status_code in (302, 403, 404)
    assert staff.post(admin_url(model, "add"), {"name": "Mine"}).status_code == 403
    assert model.objects.count() == 1


def test_the_announcement_list_costs_the_same_queries_for_one_row_or_many(cast, login):
    client = login(cast.operator)
    announcement = announcements.create_announcement(name="A", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.BLOCKED, announcement, actor=SYSTEM)
    with CaptureQueriesContext(connection) as one:
        assert client.get(admin_url(Announcement, "changelist")).status_code == 200
    for n in range(5):
        extra = announcements.create_announcement(name=f"B{n}", audio=wav(), actor=SYSTEM)
        announcements.set_rule(list(RefusalKind)[n + 1], extra, actor=SYSTEM)
    with CaptureQueriesContext(connection) as six:
        response = client.get(admin_url(Announcement, "changelist"))
    assert len(listed(response)) == 6
    assert len(six.captured_queries) == len(one.captured_queries)
