"""The files pages: the operator's alone, with the backlog per node."""

import pytest
from django.urls import reverse

from apps.core.errors import NotAllowed
from apps.files import services
from apps.files.models import FileCopy, NodeStorage, StoredFile
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, listed
from tests.factories import NodeFactory

SYSTEM = Scope.system()


@pytest.fixture
def files(cast, settings, tmp_path):
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    node2 = NodeFactory(name="node2")
    made = []
    for index in range(3):
        relative = f"node1/2026/11/26/call-{index}.wav"
        path = settings.RECORDINGS_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (index + 1))
        made.append(services.register_file(kind="recording", relative_path=relative, origin=cast.node))
    copy = FileCopy.objects.get(file=made[0], node=node2)
    services.record_failure(
        copy, error="rsync to rsync://10.0.0.2:873/smartswitch failed (10)", retryable=True
    )
    return made


@pytest.mark.parametrize("model", [StoredFile, FileCopy, NodeStorage])
def test_reseller_staff_and_customers_cannot_open_the_files_pages(model, cast, files, login):
    assert login(cast.a.staff).get(admin_url(model, "changelist")).status_code == 403
    assert login(cast.a.customer_user).get(admin_url(model, "changelist")).status_code == 302
    assert login(cast.operator).get(admin_url(model, "changelist")).status_code == 200


def test_reseller_staff_cannot_open_the_backlog_page(cast, files, login):
    assert login(cast.a.staff).get(reverse("admin:files_backlog")).status_code == 403


def test_the_operator_lists_every_file_cheaply(cast, files, login, django_assert_max_num_queries):
    client = login(cast.operator)
    with django_assert_max_num_queries(12):
        response = client.get(admin_url(StoredFile, "changelist"))
    assert listed(response) == {stored.pk for stored in files}
    detail = client.get(admin_url(files[0])).content.decode()
    assert "failed (10)" in detail


def test_the_backlog_page_shows_counts_and_the_last_error_per_node(cast, files, login):
    response = login(cast.operator).get(reverse("admin:files_backlog"))
    assert response.status_code == 200
    backlog = dict(response.context["backlog"])
    assert (backlog["node1"]["present"], backlog["node1"]["pending"], backlog["node1"]["failed"]) == (3, 0, 0)
    assert (backlog["node2"]["present"], backlog["node2"]["pending"], backlog["node2"]["failed"]) == (0, 2, 1)
    assert "failed (10)" in response.content.decode()
    failed = login(cast.operator).get(
        admin_url(FileCopy, "changelist") + "?node__name=node2&state__exact=failed"
    )
    assert listed(failed) == {FileCopy.objects.get(node__name="node2", state="failed").pk}


def test_the_operator_deletes_files_everywhere_from_the_list(cast, files, login):
    client = login(cast.operator)
    response = client.post(
        admin_url(StoredFile, "changelist"),
        {"action": "delete_everywhere", "_selected_action": [files[1].pk], "apply": "1", "reason": "gdpr"},
        follow=True,
    )
    assert response.status_code == 200
    files[1].refresh_from_db()
    assert files[1].deleted_reason == "gdpr"
    assert set(files[1].copies.values_list("state", flat=True)) == {"pending"}


def test_a_bad_sync_target_is_refused_with_the_field_named(cast, login):
    response = login(cast.operator).post(
        admin_url(NodeStorage, "add"), {"node": cast.node.pk, "sync_target": "somewhere"}
    )
    assert response.status_code == 200
    assert "sync_target" in response.context["adminform"].form.errors
    assert not NodeStorage.objects.exists()
    login(cast.operator).post(
        admin_url(NodeStorage, "add"),
        {"node": cast.node.pk, "sync_target": "rsync://127.0.0.1:8730/smartswitch"},
    )
    assert services.target_for(cast.node).url == "rsync://127.0.0.1:8730/smartswitch"


def test_the_target_template_fills_in_the_nodes_address(db, settings):
    settings.FILE_SYNC_TARGET = "smartswitch@{address}:/var/lib/smartswitch"
    node = NodeFactory(name="node7", management_address="10.9.8.7")
    assert services.target_for(node).url == "smartswitch@10.9.8.7:/var/lib/smartswitch"
    six = NodeFactory(name="node8", management_address="fd00::8")
    settings.FILE_SYNC_TARGET = "rsync://{address}:873/smartswitch"
    assert services.target_for(six).url == "rsync://[fd00::8]:873/smartswitch"


def test_the_operator_sends_a_failed_copy_again_from_the_copies_list(cast, files, login):
    failed = FileCopy.objects.get(node__name="node2", state="failed")
    present = FileCopy.objects.get(file=files[0], node=cast.node)
    with_commit = login(cast.operator)
    response = with_commit.post(
        admin_url(FileCopy, "changelist"),
        {"action": "retry_now", "_selected_action": [failed.pk, present.pk]},
        follow=True,
    )
    assert "1 copy queued on their origin nodes" in response.content.decode()
    assert services.resend_copies([failed.pk], actor=Scope.system()) == 1
    with pytest.raises(NotAllowed):
        services.resend_copies([failed.pk], actor=Scope.of_user(cast.a.staff))
