"""The Galera settings rendered per node from the Node rows."""

import configparser

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from apps.cluster import galera
from apps.nodes.models import ClusterSettings
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db


def parse(text: str) -> configparser.ConfigParser:
    """The file as mariadbd reads it (option files are INI; keys without values allowed)."""
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
    parser.read_string(text)
    return parser


@pytest.fixture
def three_nodes():
    return [
        NodeFactory(name="alpha", management_address="10.9.0.1"),
        NodeFactory(name="bravo", management_address="10.9.0.2"),
        NodeFactory(name="charlie", management_address="10.9.0.3"),
    ]


def render(node) -> configparser.ConfigParser:
    files = galera.render(node, ClusterSettings.load())
    assert list(files) == ["galera/60-galera.cnf"]
    return parse(files["galera/60-galera.cnf"])


def test_each_node_names_itself_and_lists_every_enabled_node(three_nodes):
    for node in three_nodes:
        cnf = render(node)
        assert cnf["galera"]["wsrep_cluster_address"] == "gcomm://10.9.0.1:4567,10.9.0.2:4567,10.9.0.3:4567"
        assert cnf["galera"]["wsrep_node_name"] == node.name
        assert cnf["galera"]["wsrep_node_address"] == f"{node.management_address}:4567"
        assert cnf["galera"]["wsrep_sst_receive_address"] == f"{node.management_address}:4444"
        assert cnf["mariadbd"]["bind-address"] == node.management_address
        options = cnf["galera"]["wsrep_provider_options"].strip('"')
        assert f"ist.recv_addr={node.management_address}:4568" in options
        assert f"gmcast.listen_addr=tcp://{node.management_address}:4567" in options


def test_the_settings_galera_needs_are_there(three_nodes, settings):
    settings.GALERA_GCACHE_SIZE = "2G"
    settings.GALERA_SST_METHOD = "mariabackup"
    settings.GALERA_CLUSTER_NAME = "carrier-east"
    cnf = render(three_nodes[0])
    assert cnf["galera"]["wsrep_provider"] == "/usr/lib/galera/libgalera_smm.so"
    assert cnf["galera"]["wsrep_on"] == "ON"
    assert cnf["galera"]["wsrep_cluster_name"] == "carrier-east"
    assert cnf["galera"]["wsrep_sst_method"] == "mariabackup"
    assert cnf["galera"]["wsrep_auto_increment_control"] == "ON"
    assert cnf["galera"]["wsrep_sync_wait"] == "1"
    assert "gcache.size=2G" in cnf["galera"]["wsrep_provider_options"]
    assert cnf["mariadbd"]["binlog_format"] == "ROW"
    assert cnf["mariadbd"]["default_storage_engine"] == "InnoDB"
    assert cnf["mariadbd"]["innodb_autoinc_lock_mode"] == "2"
    assert cnf["mariadbd"]["transaction_isolation"] == "READ-COMMITTED"


def test_a_disabled_node_is_left_out_of_the_others_cluster_address(three_nodes):
    three_nodes[2].enabled = False
    three_nodes[2].save(update_fields=["enabled"])
    cnf = render(three_nodes[0])
    assert cnf["galera"]["wsrep_cluster_address"] == "gcomm://10.9.0.1:4567,10.9.0.2:4567"


def test_an_ipv6_management_address_is_bracketed():
    node = NodeFactory(name="six", management_address="fd00::6")
    cnf = render(node)
    assert cnf["galera"]["wsrep_node_address"] == "[fd00::6]:4567"
    assert cnf["galera"]["wsrep_cluster_address"] == "gcomm://[fd00::6]:4567"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("GALERA_SST_METHOD", "xtrabackup", "GALERA_SST_METHOD"),
        ("GALERA_GCACHE_SIZE", "lots", "GALERA_GCACHE_SIZE"),
        ("GALERA_CLUSTER_NAME", "two words", "GALERA_CLUSTER_NAME"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(three_nodes, settings, name, value, named):
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=named):
        render(three_nodes[0])


def test_render_node_config_writes_the_galera_file(three_nodes, tmp_path, monkeypatch):
    # The OpenSIPS renderer is another app's; this test is about the Galera file it sits beside.
    monkeypatch.setattr("apps.nodes.rendering.RENDERERS", ("apps.cluster.galera.render",))
    call_command("render_node_config", node="bravo", out=tmp_path)
    cnf = parse((tmp_path / "galera" / "60-galera.cnf").read_text())
    assert cnf["galera"]["wsrep_node_name"] == "bravo"
    assert oct((tmp_path / "galera" / "60-galera.cnf").stat().st_mode & 0o777) == "0o640"
