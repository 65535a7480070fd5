"""Nodes whose OpenSIPS is an MI server on loopback answering with replies recorded from
OpenSIPS 3.6.8 (tests/engines/replies), and the queue of tasks sent to nodes."""

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from tests.engines import RecordedMI
from tests.engines.replies import recorded
from tests.factories import NodeFactory

# The replies a node's OpenSIPS gives on the node page: one call up, one registration.
PAGE_REPLIES = {
    "version": "version",
    "uptime": "uptime",
    "get_statistics": "get_statistics",
    "ul_dump": "ul_dump",
    "reg_list": "reg_list",
    "address_reload": "address_reload",
    "dr_reload": "dr_reload",
    "reg_reload": "reg_reload",
    "dlg_end_dlg": "dlg_end_dlg",
}


@pytest.fixture
def mi(settings):
    """A recorded-reply OpenSIPS reached at every node whose management address is 127.0.0.1."""
    with RecordedMI() as server:
        for command, name in PAGE_REPLIES.items():
            server.replies[command] = recorded(name)
        server.replies["dlg_list_ctx"] = {"result": {"count": 1, **recorded("dlg_list_ctx")["result"]}}
        settings.OPENSIPS_MI_URL = server.template
        yield server


@pytest.fixture
def dead_mi(settings):
    """Nothing listens where the nodes' OpenSIPS should answer."""
    with RecordedMI() as server:
        template = server.template
    settings.OPENSIPS_MI_URL = template  # closed: the port refuses connections
    return template


@pytest.fixture
def nodes(db):
    """Two enabled nodes on loopback and a disabled one."""
    return (
        NodeFactory(name="node1", management_address="127.0.0.1"),
        NodeFactory(name="node2", management_address="127.0.0.1"),
        NodeFactory(name="node3", management_address="127.0.0.1", enabled=False),
    )


@pytest.fixture
def queue():
    """The tasks queued for nodes, as (node, func, args), read from the ORM broker."""
    if not Conf.ORM:
        pytest.skip("REDIS_URL is set: these tests read the ORM broker's queue")
    OrmQ.objects.all().delete()

    def read():
        rows = [(row.key, SignedPackage.loads(row.payload)) for row in OrmQ.objects.order_by("id")]
        return sorted((node, task["func"], task["args"]) for node, task in rows)

    return read
