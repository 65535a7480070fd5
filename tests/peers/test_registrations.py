"""Outbound registrations to suppliers' registrars, as uac_registrant rows per origination mode."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.nodes.models import ClusterSettings
from apps.opensips import provisioning
from apps.opensips.models import Registrant
from apps.peers import services
from apps.peers.models import Registration
from tests.factories import NodeFactory

REGISTRAR = "sip:reg.carrier.example"


def origination(mode: str, shared_ip: str | None = None) -> None:
    ClusterSettings.load()
    ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).update(
        origination_mode=mode, shared_ip=shared_ip
    )


def register(peer, actor, **fields):
    values = {"registrar": REGISTRAR, "aor": "sip:4420@carrier.example", "username": "4420", "password": "pw"}
    return services.add_registration(peer, actor=actor, **(values | fields))


def rows():
    return list(
        Registrant.objects.order_by("forced_socket").values_list(
            "registrar",
            "aor",
            "binding_uri",
            "username",
            "password",
            "expiry",
            "forced_socket",
            "cluster_shtag",
        )
    )


def test_dedicated_ip_mode_registers_each_node_from_its_own_socket(cast, system):
    node2 = NodeFactory(name="node2", sip_address="100.64.9.2", sip_port=5070)
    cast.node.sip_address = "100.64.9.1"
    cast.node.save()
    register(cast.supplier, system, node=cast.node, aor="sip:4420@carrier.example", username="4420")
    register(cast.supplier, system, node=node2, aor="sip:4421@carrier.example", username="4421", expiry=600)
    assert rows() == [
        (
            REGISTRAR,
            "sip:4420@carrier.example",
            "sip:4420@100.64.9.1:5060",
            "4420",
            "pw",
            3600,
            "udp:100.64.9.1:5060",
            None,
        ),
        (
            REGISTRAR,
            "sip:4421@carrier.example",
            "sip:4421@100.64.9.2:5070",
            "4421",
            "pw",
            600,
            "udp:100.64.9.2:5070",
            None,
        ),
    ]


def test_shared_ip_mode_registers_once_from_the_shared_ip_under_the_vip_tag(cast, system):
    origination("shared", "100.64.0.100")
    register(cast.supplier, system, proxy="sip:proxy.carrier.example")
    [row] = Registrant.objects.all()
    assert (row.forced_socket, row.cluster_shtag, row.binding_uri, row.proxy) == (
        "udp:100.64.0.100:5060",
        "vip/1",
        "sip:4420@100.64.0.100:5060",
        "sip:proxy.carrier.example",
    )


def test_a_node_row_is_refused_in_shared_mode_and_required_in_dedicated_mode(cast, system):
    with pytest.raises(ValidationError) as missing:
        register(cast.supplier, system)
    assert "choose the node" in missing.value.message_dict["node"][0]
    origination("shared", "100.64.0.100")
    with pytest.raises(ValidationError) as extra:
        register(cast.supplier, system, node=cast.node)
    assert "leave the node empty" in extra.value.message_dict["node"][0]
    assert not Registration.objects.exists() and not Registrant.objects.exists()


def test_a_second_registration_from_the_same_node_is_refused(cast, system):
    register(cast.supplier, system, node=cast.node)
    with pytest.raises(ValidationError) as duplicate:
        register(cast.supplier, system, node=cast.node, aor="sip:other@carrier.example")
    assert "from this node" in duplicate.value.message_dict["node"][0]
    assert Registrant.objects.count() == 1


def test_only_suppliers_are_registered_to_and_values_are_checked(cast, system):
    with pytest.raises(ValidationError) as refused:
        register(cast.a.customer, system, node=cast.node, registrar="registrar.example", expiry=5)
    assert set(refused.value.message_dict) == {"peer", "registrar", "expiry"}


def test_changes_disabling_and_removal_follow_the_service(
    cast, system, monkeypatch, django_capture_on_commit_callbacks
):
    asked = []
    monkeypatch.setattr(provisioning, "request_reload", lambda *modules: asked.append(modules))
    with django_capture_on_commit_callbacks(execute=True):
        registration = register(cast.supplier, system, node=cast.node)
    assert asked == [("registrant",)]
    services.update_child(registration, actor=system, changes={"password": "new-secret"})
    assert Registrant.objects.get().password == "new-secret"
    services.update_peer(cast.supplier, actor=system, changes={"enabled": False})
    assert not Registrant.objects.exists()
    services.update_peer(cast.supplier, actor=system, changes={"enabled": True})
    services.remove_child(registration, actor=system)
    assert not Registrant.objects.exists()


def test_a_reseller_cannot_add_registrations(cast, system):
    from apps.core.errors import NotAllowed
    from apps.tenancy.scope import Scope

    with pytest.raises(NotAllowed):
        register(cast.supplier, Scope.of_user(cast.a.staff), node=cast.node)


def test_the_operator_adds_a_registration_in_the_admin_and_resellers_cannot_see_them(cast, client):
    client.force_login(cast.operator)
    response = client.post(
        reverse("admin:peers_registration_add"),
        {
            "peer": cast.supplier.pk,
            "registrar": REGISTRAR,
            "aor": "sip:4420@carrier.example",
            "username": "4420",
            "password": "pw",
            "proxy": "",
            "expiry": "3600",
            "node": cast.node.pk,
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Registrant.objects.get().forced_socket == f"udp:{cast.node.sip_address}:5060"
    client.force_login(cast.a.staff)
    assert client.get(reverse("admin:peers_registration_changelist")).status_code == 403


def test_switching_to_shared_ip_is_drift_that_the_resync_reports_and_repairs(cast, system, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    per_node = register(cast.supplier, system, node=cast.node)
    origination("shared", "100.64.0.100")  # the cluster settings changed behind the tables
    with pytest.raises(CommandError):
        call_command("sync_opensips_tables", "--check", "--table", "registrant")
    call_command("sync_opensips_tables", "--table", "registrant")
    assert not Registrant.objects.exists()
    assert "shared-IP origination registers once, without a node" in capsys.readouterr().err
    services.remove_child(per_node, actor=system)
    register(cast.supplier, system)
    assert Registrant.objects.get().forced_socket == "udp:100.64.0.100:5060"


def test_the_shared_ip_tag_is_the_one_the_rendered_config_declares():
    config = pytest.importorskip("apps.opensips.config", reason="the config renderer is not merged")
    assert f"vip/{config.CLUSTER_ID}" == provisioning.SHARED_IP_TAG


def test_the_clear_password_never_reaches_the_audit_log(cast, system):
    from apps.audit.models import AuditEntry

    registration = register(cast.supplier, system, node=cast.node, password="first-s3cret")
    services.update_child(registration, actor=system, changes={"password": "second-s3cret"})
    entries = AuditEntry.objects.filter(object_type="peers.registration").order_by("pk")
    assert [entry.action for entry in entries] == ["registration.created", "registration.changed"]
    assert entries[1].data["changes"]["password"] == "(changed)"
    assert "s3cret" not in str([entry.data for entry in entries])
