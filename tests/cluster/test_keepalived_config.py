"""The keepalived.conf rendered per node when the cluster has a shared IP."""

import re
import shutil
import subprocess

import pytest
from django.core.exceptions import ValidationError

from apps.cluster import keepalived
from apps.nodes import services
from apps.nodes.models import ClusterSettings
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db
SYSTEM = Scope.system()


@pytest.fixture
def three_nodes():
    return [
        NodeFactory(name="alpha", management_address="10.9.0.1", vrrp_priority=150),
        NodeFactory(name="bravo", management_address="10.9.0.2", vrrp_priority=140, vrrp_interface="ens3"),
        NodeFactory(name="charlie", management_address="10.9.0.3", vrrp_priority=130),
    ]


def shared_ip(**changes) -> ClusterSettings:
    values = {"origination_mode": "shared", "shared_ip": "203.0.113.10"} | changes
    return services.update_cluster_settings(actor=SYSTEM, changes=values)


def render(node) -> str:
    files = keepalived.render(node, ClusterSettings.load())
    assert list(files) == ["keepalived/keepalived.conf"]
    return files["keepalived/keepalived.conf"]


def block(conf: str, name: str) -> list[str]:
    """The lines inside `name { ... }` (one level)."""
    inside = re.search(name + r" \{\n(.*?)\n    \}", conf, re.S)
    return [line.strip() for line in inside[1].splitlines()]


def test_nothing_is_rendered_without_a_shared_ip(three_nodes):
    assert keepalived.render(three_nodes[0], ClusterSettings.load()) == {}


def test_each_node_advertises_to_the_other_enabled_nodes_with_its_priority(three_nodes):
    NodeFactory(name="delta", management_address="10.9.0.4", enabled=False)
    shared_ip()

    conf = render(three_nodes[1])

    assert block(conf, "unicast_peer") == ["10.9.0.1", "10.9.0.3"]
    assert "    unicast_src_ip 10.9.0.2\n" in conf
    assert "    priority 140\n" in conf
    assert "    interface ens3\n" in conf
    assert block(conf, "virtual_ipaddress") == ["203.0.113.10/32 dev ens3"]
    assert f"auth_pass {ClusterSettings.load().vrrp_password}" in conf
    assert "    nopreempt\n" in conf
    # The check asks the node's own OpenSIPS MI and call control; the notify moves the tag.
    assert "smartswitch-check http://10.9.0.2:8888/mi http://127.0.0.1:8001/health/" in conf
    assert "smartswitch-notify master http://10.9.0.2:8888/mi vip/1" in conf


def test_preemption_and_dedicated_ip_origination_change_what_is_rendered(three_nodes):
    shared_ip(origination_mode="dedicated", shared_ip_preempt=True, shared_ip_prefix_length=24)

    conf = render(three_nodes[0])

    assert "nopreempt" not in conf
    assert block(conf, "virtual_ipaddress") == ["203.0.113.10/24 dev eth0"]
    # No sharing tag in OpenSIPS without shared-IP origination: the notify script moves none.
    assert "smartswitch-notify master http://10.9.0.1:8888/mi -\n" in conf.replace('"', "\n")


def test_sub_second_advertisements_are_vrrp_3_without_the_password(three_nodes):
    shared_ip(vrrp_advert_ms=500)

    conf = render(three_nodes[0])

    assert "    vrrp_version 3\n" in conf and "    advert_int 0.5\n" in conf
    assert "auth_pass" not in conf and "    check_unicast_src\n" in conf
    one_second = shared_ip(vrrp_advert_ms=1000)
    conf = render(three_nodes[0])
    assert "vrrp_version" not in conf and "    advert_int 1\n" in conf
    assert f"auth_pass {one_second.vrrp_password}" in conf


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="no keepalived: install Debian's keepalived")
@pytest.mark.parametrize("advert_ms", [1000, 300])
def test_keepalived_accepts_the_rendered_file(three_nodes, tmp_path, advert_ms):
    shared_ip(vrrp_advert_ms=advert_ms)
    path = tmp_path / "keepalived.conf"
    path.write_text(render(three_nodes[0]))

    checked = subprocess.run(  # noqa: S603 - keepalived from PATH, our file
        [shutil.which("keepalived"), "--config-test", f"--use-file={path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"shared_ip_prefix_length": 33}, "shared_ip_prefix_length"),
        ({"vrrp_router_id": 0}, "vrrp_router_id"),
        ({"vrrp_router_id": 256}, "vrrp_router_id"),
        ({"vrrp_password": "a b"}, "vrrp_password"),
        ({"vrrp_advert_ms": 50}, "vrrp_advert_ms"),
        ({"vrrp_advert_ms": 1005}, "vrrp_advert_ms"),
    ],
)
def test_bad_shared_ip_settings_are_refused_naming_the_field(changes, field):
    with pytest.raises(ValidationError) as refused:
        shared_ip(**changes)
    assert field in refused.value.message_dict


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"vrrp_priority": 0}, "vrrp_priority"),
        ({"vrrp_priority": 255}, "vrrp_priority"),
        ({"vrrp_interface": "eth 0"}, "vrrp_interface"),
    ],
)
def test_bad_node_settings_are_refused_naming_the_field(three_nodes, changes, field):
    with pytest.raises(ValidationError) as refused:
        services.update_node(three_nodes[0], actor=SYSTEM, changes=changes)
    assert field in refused.value.message_dict
