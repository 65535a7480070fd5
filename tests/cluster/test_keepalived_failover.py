"""The shared IP moves between three nodes with the keepalived.conf the product renders.

Each node is a network namespace (tests/cluster/netns.py) running Debian's keepalived on the
rendered file and the product's scripts (deploy/keepalived). What those scripts talk to, the
node's OpenSIPS MI and its call control's /health/, is tests/cluster/standin.py: stopping it
is the node's services failing; its log shows the sharing tag handed to the new holder.
Priorities: node1 150, node2 140, node3 130. Each move is timed from the failure to the new
holder having the address, and printed (docs/CLUSTER.md, "Shared IP", gives the figures).
"""

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apps.cluster.keepalived import keepalived_conf
from apps.opensips.provisioning import SHARED_IP_TAG
from tests.cluster import live_nodes, netns

pytestmark = pytest.mark.netns

SHARED_IP = str(netns.TEST_NET.network_address + 100)
PRIORITIES = {1: 150, 2: 140, 3: 130}
# VRRP with one advertisement a second: a backup takes over 3 advertisements plus its skew
# ((256 - priority) / 256 s) after the master's last one; a failed check needs 2 runs.
# The bound adds a second for a busy machine (the tests run beside others). A node coming
# back (preemption) passes 2 checks, then waits out the master's silence as a backup does.
MOVE_BOUND = 5.0
# With advertisements every 0.5 s (VRRP 3): 1.5 s plus the skew, and the same second of slack.
FAST_BOUND = 3.0
RETURN_BOUND = 8.0
ELECTION_BOUND = 10.0


@dataclass
class Cluster:
    hosts: netns.Hosts
    root: Path
    preempt: bool
    advert_ms: int = 1000
    keepalived: dict[int, subprocess.Popen] = field(default_factory=dict)
    services: dict[int, subprocess.Popen] = field(default_factory=dict)

    def start_services(self, i: int) -> None:
        process = self.hosts.run(
            i,
            [sys.executable, "-m", "tests.cluster.standin", str(self.mi_log(i))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout.readline().strip() == "ready"
        self.services[i] = process

    def stop_services(self, i: int) -> None:
        stop(self.services.pop(i))

    def start_keepalived(self, i: int) -> None:
        conf = self.root / f"keepalived{i}.conf"
        conf.write_text(
            keepalived_conf(
                name=f"node{i}",
                interface="eth0",
                address=self.hosts.address(i),
                peers=[self.hosts.address(j) for j in PRIORITIES if j != i],
                priority=PRIORITIES[i],
                router_id=51,
                password="t3stpass",
                shared_ip=SHARED_IP,
                prefix_length=32,
                preempt=self.preempt,
                mi_url=f"http://{self.hosts.address(i)}:8888/mi",
                health_url="http://127.0.0.1:8001/health/",
                sharing_tag=SHARED_IP_TAG,
                advert_ms=self.advert_ms,
            )
        )
        self.keepalived[i] = live_nodes.start_keepalived(self.hosts, self.root, i)

    def kill_node(self, i: int) -> None:
        live_nodes.kill_node(self.hosts, i)
        for process in (self.keepalived.pop(i), self.services.pop(i)):
            process.wait(timeout=10)

    def mi_log(self, i: int) -> Path:
        return self.root / f"mi{i}.log"

    def tags_set(self, i: int) -> list:
        """The sharing tags node i's notify script made active, in order."""
        if not self.mi_log(i).exists():
            return []
        calls = [json.loads(line) for line in self.mi_log(i).read_text().splitlines()]
        return [c["params"]["tag"] for c in calls if c["method"] == "clusterer_shtag_set_active"]

    def wait_tags(self, i: int, expected: list) -> list:
        """What tags_set(i) gives once it is `expected`, or after 5 s (the notify script runs
        after the move, on its own)."""
        deadline = time.monotonic() + 5
        while self.tags_set(i) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.tags_set(i)

    def holders(self) -> set[int]:
        return {i for i in PRIORITIES if self.hosts.holds(i, SHARED_IP)}

    def wait_for(self, holder: int, bound: float, *, since: float, ignore: frozenset = frozenset()) -> float:
        """Seconds from `since` until `holder` has the address and no other node (bar
        `ignore`: a node whose keepalived was killed keeps its address configured) has it."""
        while time.monotonic() - since < bound + 5:
            if self.holders() - ignore == {holder}:
                return time.monotonic() - since
            time.sleep(0.05)
        logs = {i: (self.root / f"keepalived{i}.log").read_text()[-1500:] for i in PRIORITIES}
        raise AssertionError(f"node {holder} did not take {SHARED_IP}: holders {self.holders()}\n{logs}")

    def close(self) -> None:
        for process in [*self.keepalived.values(), *self.services.values()]:
            stop(process)
        self.hosts.close()


def stop(process: subprocess.Popen, how: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def started(tmp_path: Path, *, preempt: bool, advert_ms: int = 1000) -> Cluster:
    reason = netns.available() or (
        None if live_nodes.KEEPALIVED else "no keepalived: install Debian's keepalived"
    )
    if reason:
        pytest.skip(reason)
    cluster = Cluster(netns.Hosts(3), tmp_path, preempt, advert_ms)
    try:
        # node1 first: the first node up takes the address (without preemption, a node of
        # higher priority starting later leaves it where it is).
        for i in PRIORITIES:
            cluster.start_services(i)
            cluster.start_keepalived(i)
            if i == 1:
                elected = cluster.wait_for(1, ELECTION_BOUND, since=time.monotonic())
                print(f"node1 alone took the address in {elected:.2f} s")
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture
def cluster(tmp_path):
    cluster = started(tmp_path, preempt=False)
    yield cluster
    cluster.close()


@pytest.fixture
def preempting(tmp_path):
    cluster = started(tmp_path, preempt=True)
    yield cluster
    cluster.close()


def test_the_address_moves_to_the_next_node_when_the_holder_dies(cluster):
    assert cluster.wait_tags(1, [SHARED_IP_TAG]) == [SHARED_IP_TAG]
    assert cluster.tags_set(2) == []

    killed = time.monotonic()
    cluster.kill_node(1)
    moved = cluster.wait_for(2, MOVE_BOUND, since=killed, ignore=frozenset({1}))

    print(f"node1 killed: node2 holds {SHARED_IP} after {moved:.2f} s")
    assert moved <= MOVE_BOUND
    assert cluster.wait_tags(2, [SHARED_IP_TAG]) == [SHARED_IP_TAG]  # the shared-IP registrations follow
    assert 3 not in cluster.holders()


def test_with_half_second_advertisements_a_dead_holder_is_replaced_within_3_s(tmp_path):
    cluster = started(tmp_path, preempt=False, advert_ms=500)
    try:
        killed = time.monotonic()
        cluster.kill_node(1)
        moved = cluster.wait_for(2, FAST_BOUND, since=killed, ignore=frozenset({1}))
    finally:
        cluster.close()

    print(f"VRRP 3, 0.5 s advertisements, node1 killed: node2 holds {SHARED_IP} after {moved:.2f} s")
    assert moved <= FAST_BOUND


def test_a_node_whose_services_fail_gives_the_address_up_and_does_not_take_it_back(cluster):
    failed = time.monotonic()
    cluster.stop_services(1)
    moved = cluster.wait_for(2, MOVE_BOUND, since=failed)
    print(f"node1's services stopped: node2 holds {SHARED_IP} after {moved:.2f} s")
    assert moved <= MOVE_BOUND

    cluster.start_services(1)
    time.sleep(4)  # two good checks, then three advertisements' time to claim it back

    assert cluster.holders() == {2}  # no preemption (the default): one move per failure


def test_with_preemption_the_node_of_highest_priority_takes_the_address_back(preempting):
    preempting.stop_services(1)
    preempting.wait_for(2, MOVE_BOUND, since=time.monotonic())

    back = time.monotonic()
    preempting.start_services(1)
    returned = preempting.wait_for(1, RETURN_BOUND, since=back)

    print(f"node1's services back: node1 holds {SHARED_IP} again after {returned:.2f} s")
    assert preempting.wait_tags(1, [SHARED_IP_TAG] * 2) == [SHARED_IP_TAG] * 2
