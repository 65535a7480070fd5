"""The FreeSWITCH fields of a node: ports that can be bound and a password of its own."""

from importlib import import_module

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError

from apps.nodes.models import Node
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db


def test_a_node_runs_freeswitch_on_its_own_port_with_its_own_esl_password():
    first, second = NodeFactory(), NodeFactory()

    assert first.media_enabled is True
    assert (first.media_port, first.esl_port) == (5080, 8021)
    assert len(first.esl_password) >= 32
    assert first.esl_password != second.esl_password


def test_media_port_equal_to_the_sip_port_is_refused():
    node = NodeFactory.build(sip_port=5060, media_port=5060)

    with pytest.raises(ValidationError) as error:
        node.full_clean()

    assert "own" in error.value.message_dict["media_port"][0]


@pytest.mark.parametrize("field", ["media_port", "esl_port", "sip_port"])
@pytest.mark.parametrize("port", [0, 65536])
def test_ports_outside_1_to_65535_are_refused(field, port):
    node = NodeFactory.build(**{field: port})

    with pytest.raises(ValidationError) as error:
        node.full_clean()

    assert error.value.message_dict[field] == ["A port is between 1 and 65535."]


def test_a_port_another_node_binds_on_the_same_address_is_refused():
    NodeFactory(name="one", sip_address="127.0.0.1", sip_port=5060, media_port=5080)
    node = NodeFactory.build(name="two", sip_address="127.0.0.1", sip_port=5062, media_port=5060)

    with pytest.raises(ValidationError) as error:
        node.full_clean()

    assert error.value.message_dict["media_port"] == ["Port 5060 of 127.0.0.1 is used by node one."]


def test_the_same_ports_on_another_address_are_accepted():
    NodeFactory(name="one", sip_address="127.0.0.1")
    node = NodeFactory.build(name="two", sip_address="127.0.0.2")

    node.full_clean()


def test_a_node_saved_again_does_not_clash_with_itself():
    node = NodeFactory(sip_address="127.0.0.1")

    node.full_clean()


def test_existing_nodes_get_different_esl_passwords_from_the_migration():
    NodeFactory(name="one")
    NodeFactory(name="two")
    Node.objects.update(esl_password="same")
    migration = import_module("apps.nodes.migrations.0004_node_media")

    migration.give_each_node_its_own_esl_password(apps, None)

    assert len(set(Node.objects.values_list("esl_password", flat=True))) == 2
