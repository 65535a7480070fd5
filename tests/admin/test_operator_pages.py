"""Operator-only pages (nodes, cluster settings) and logins and keys, written through services."""

from apps.audit.models import AuditEntry
from apps.nodes.models import ClusterSettings, Node
from apps.tenancy.models import ApiKey, Membership, Reseller
from apps.tenancy.services import authenticate_api_key
from tests.admin.conftest import admin_url, form_payload, messages_of, tool_url


def test_cluster_settings_list_goes_to_the_one_row_which_cannot_be_added_or_deleted(cast, login):
    client = login(cast.operator)
    response = client.get(admin_url(ClusterSettings, "changelist"))
    assert response.status_code == 302
    assert response.url == admin_url(ClusterSettings, "change", ClusterSettings.SINGLETON_ID)
    assert client.get(response.url).status_code == 200
    assert not ClusterSettings.objects.exists()  # looking does not write
    assert client.get(admin_url(ClusterSettings, "add")).status_code == 403
    ClusterSettings.load()
    assert client.post(admin_url(ClusterSettings.load(), "delete"), {"post": "yes"}).status_code == 403
    assert ClusterSettings.objects.count() == 1


def test_cluster_settings_are_saved_through_the_service(cast, login):
    client = login(cast.operator)
    url = admin_url(ClusterSettings, "change", ClusterSettings.SINGLETON_ID)
    payload = form_payload(client.get(url))
    payload.update(origination_mode="shared", shared_ip="")
    refused = client.post(url, payload)
    assert refused.status_code == 200
    assert "shared_ip" in refused.context["adminform"].form.errors
    payload["shared_ip"] = "198.51.100.250"
    assert client.post(url, payload).status_code == 302
    settings = ClusterSettings.load()
    assert (settings.origination_mode, settings.shared_ip) == ("shared", "198.51.100.250")
    assert AuditEntry.objects.filter(action="cluster.changed", actor=cast.operator).exists()


def test_a_node_is_added_and_changed_through_the_services(cast, login):
    client = login(cast.operator)
    response = client.post(
        admin_url(Node, "add"),
        {
            "name": "node2",
            "management_address": "10.0.0.2",
            "sip_address": "198.51.100.2",
            "sip_port": "5060",
            "public_hostname": "",
            "enabled": "on",
            "media_enabled": "on",
            "media_port": "5080",
            "esl_port": "8021",
            "vrrp_interface": "eth0",
            "vrrp_priority": "100",
            "dns_weight": "10",
        },
    )
    assert response.status_code == 302
    node = Node.objects.get(name="node2")
    assert (node.media_enabled, node.media_port, node.esl_port) == (True, 5080, 8021)
    payload = form_payload(client.get(admin_url(node)))
    payload.pop("enabled")
    assert client.post(admin_url(node), payload).status_code == 302
    node.refresh_from_db()
    assert not node.enabled
    assert set(
        AuditEntry.objects.filter(object_id=str(node.pk), object_type="nodes.node").values_list(
            "action", flat=True
        )
    ) == {"node.created", "node.changed"}


def test_an_api_key_token_is_shown_once_and_works(cast, login):
    response = login(cast.a.staff).post(
        admin_url(ApiKey, "add"), {"name": "billing sync", "scope": "reseller"}, follow=True
    )
    key = ApiKey.objects.get(name="billing sync")
    assert key.reseller == cast.a.reseller
    token = next(m for m in messages_of(response) if "not shown again" in m).split("<code>")[1].split("<")[0]
    assert authenticate_api_key(token) == key
    assert token not in login(cast.a.staff).get(admin_url(key)).content.decode()


def test_an_api_key_is_revoked_through_its_tool(cast, login):
    key = ApiKey.objects.get(reseller=cast.a.reseller)
    client = login(cast.a.staff)
    assert client.post(tool_url(key, "revoke"), {}).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert authenticate_api_key(cast.a.staff_key) is None
    other = ApiKey.objects.get(reseller=cast.b.reseller)
    assert client.post(tool_url(other, "revoke"), {}).status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


def test_a_reseller_is_created_by_the_operator_and_its_staff_add_a_colleague(cast, login):
    response = login(cast.operator).post(
        admin_url(Reseller, "add"), {"name": "Reseller C", "company": "", "currency": "EUR", "email": ""}
    )
    assert response.status_code == 302
    assert Reseller.objects.get(name="Reseller C").currency == "EUR"
    client = login(cast.a.staff)
    response = client.post(
        tool_url(cast.a.reseller, "staff"),
        {"username": "staff_a2", "password": "An0ther-long-pass", "email": ""},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__username="staff_a2")
    assert membership.reseller == cast.a.reseller and membership.user.is_staff
    assert client.get(tool_url(cast.b.reseller, "staff")).status_code == 404


def test_a_taken_login_name_is_a_form_error(cast, login):
    response = login(cast.operator).post(
        tool_url(cast.a.reseller, "staff"), {"username": "staff_b", "password": "An0ther-long-pass"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["username"] == ["That login name is taken."]
    assert Membership.objects.get(user__username="staff_b").reseller == cast.b.reseller
