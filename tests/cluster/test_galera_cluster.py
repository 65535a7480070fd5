"""The cluster's promises, proven on a real three-node Galera cluster on loopback.

Every member is a node: the product runs against it in its own `manage.py` process.
Members are killed with SIGKILL (no shutdown, no goodbye), as a power cut would.
"""

import json
import time
from decimal import Decimal

import pytest

from apps.billing.services.rating import GIVE_UP_LIMIT
from tests.cluster.conftest import MEASURED
from tests.files.rsyncd import RsyncDaemon, rsync_missing

pytestmark = pytest.mark.galera

CALLS = 600
RACE_PAYMENTS = 40
WRITES_AFTER_KILL = 100


def work(cluster, member, call: str, *, background: bool = False):
    """Run `tests.cluster.galera_work.<call>` on `member`: the JSON lines it printed, or the
    running process when `background`."""
    args = ("shell", "--no-imports", "-c", f"from tests.cluster import galera_work as w; w.{call}")
    if background:
        return cluster.spawn(member, *args)
    return lines(cluster.manage(member, *args).stdout)


def next_line(stream) -> dict:
    """The next JSON line a background `work` printed (waits for it)."""
    for line in stream:
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("the process ended without saying anything")


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def checksums(cluster, member, tables) -> dict[str, tuple]:
    """Row count and CHECKSUM TABLE of each table on `member` (table names are ours, not input)."""
    return {
        table: cluster.query(member, f"SELECT COUNT(*) FROM {table}")[0]  # noqa: S608
        + cluster.query(member, f"CHECKSUM TABLE {table}")[0][1:]
        for table in tables
    }


@pytest.fixture(scope="module")
def world(galera_cluster):
    """Nodes, prices, suppliers and five customers with money, made on node 1."""
    return work(galera_cluster, galera_cluster.members[0], "build_world()")[0]


def test_a_peer_created_on_node_1_is_read_on_nodes_2_and_3_right_after_commit(cluster):
    one, two, three = cluster.members
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTHER_MEMBERS", json.dumps({m.name: m.url() for m in (two, three)}))
        (result,) = work(cluster, one, "create_peer_and_read_elsewhere('Seen everywhere')")

    # Read on fresh connections the moment create_peer returned on node 1. wsrep_sync_wait=1
    # (rendered into every node's settings) makes each read wait until its member applied
    # what the cluster had committed before it; without it the writeset may still be queued
    # for the appliers there.
    assert result["sync_wait"] == 1
    assert result["seen"] == {"node2": ["Seen everywhere"], "node3": ["Seen everywhere"]}


@pytest.mark.parametrize("how", ["command", "worker"])
def test_three_nodes_rating_and_taking_payments_at_once_charge_every_call_once(cluster, world, how):
    """`command`: `manage.py rate_cdrs` on every node (any CDR, oldest first, so the three
    fight over the same rows); `worker`: rating as billing_loop does (own node's CDRs first).
    Meanwhile each node posts the same 40 payment references to the same five accounts."""
    work(cluster, cluster.members[0], f"add_calls({CALLS}, {how!r})")
    go_at = time.time() + 6  # every process has loaded Django by then
    racers = [
        work(cluster, member, f"race({go_at}, {RACE_PAYMENTS}, {how!r})", background=True)
        for member in cluster.members
    ]
    outputs = [racer.communicate(timeout=240) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], outputs
    results = [lines(out)[-1] for out, _ in outputs]
    rated = [r["rated"] for r in results]
    stopped = [r["stopped"] for r in results]
    retries = [r["retries"] for r in results]
    MEASURED[f"race ({how}): conflicts retried on node1, node2, node3"] = f"{retries} = {sum(retries)}"
    MEASURED[f"race ({how}): CDRs rated on node1, node2, node3"] = str(rated)
    MEASURED[f"race ({how}): batches that outlasted the retries, taken again"] = str(
        [r["gave_up"] for r in results]
    )
    MEASURED[f"race ({how}): raters stopped ({GIVE_UP_LIMIT} such batches in a row)"] = str(stopped)

    # A run stopped by conflicts rolled back its last batch only; its earlier batches count
    # nowhere above, so the exact sum holds only when no run stopped.
    assert sum(rated) == CALLS if not any(stopped) else sum(rated) <= CALLS
    # Each reference was posted on all three nodes; exactly one posting created it.
    assert sum(r["payments_created"] for r in results) == RACE_PAYMENTS

    summaries = [work(cluster, member, f"ledger_summary({how!r})")[0] for member in cluster.members]
    assert summaries[0] == summaries[1] == summaries[2]
    summary = summaries[0]
    assert summary["unrated"] == 0
    assert summary["charges"] == 2 * summary["answered"] > 0
    assert summary["duplicate_charges"] == summary["duplicate_payments"] == 0
    assert summary["race_payments"] == RACE_PAYMENTS
    assert summary["differences"] == 0
    assert Decimal(summary["balances"]) == Decimal(summary["paid"]) - Decimal(summary["sold"])
    for member in cluster.members:
        assert "Every balance equals" in cluster.manage(member, "check_ledger").stdout


def test_a_killed_node_leaves_the_others_writing_and_rejoins_by_ist(cluster, world):
    one, two, three = cluster.members
    tables = ["billing_ledgerentry", "billing_account", "cdr_cdr", "peers_peer", "audit_auditentry"]
    killed = cluster.root / "node3-killed"
    writers = [
        work(
            cluster,
            member,
            f"write_payments('kill-{member.name}', {WRITES_AFTER_KILL}, {str(killed)!r})",
            background=True,
        )
        for member in (one, two)
    ]
    # Both writers are committing payments one after another: node 3 dies in the middle.
    for writer in writers:
        assert next_line(writer.stdout) == {"started": True}
    cluster.kill(three)
    killed.touch()

    outputs = [writer.communicate(timeout=180) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    posted = [lines(out)[-1]["posted"] for out, _ in outputs]
    # Each went on for WRITES_AFTER_KILL payments after the kill, all committed.
    assert all(count > WRITES_AFTER_KILL for count in posted)
    MEASURED["payments committed on node1, node2 while node3 was killed"] = str(posted)
    status = cluster.status(one)
    assert (status["wsrep_cluster_size"], status["wsrep_cluster_status"]) == ("2", "Primary")

    rejoin = cluster.restart(three)
    MEASURED["node3 rejoin after kill -9 (recover + IST + Synced)"] = (
        f"{rejoin.seconds:.1f}s, {rejoin.writesets} writesets by "
        f"{'SST (full copy)' if rejoin.full_copy else 'IST'}"
    )
    # Only what it missed was replayed; not a copy of the whole data directory.
    assert not rejoin.full_copy
    assert rejoin.writesets > 0

    expected = checksums(cluster, one, tables)
    assert checksums(cluster, two, tables) == expected
    assert checksums(cluster, three, tables) == expected
    count = cluster.query(three, "SELECT COUNT(*) FROM billing_ledgerentry WHERE reference LIKE 'kill-%'")
    assert count == [(sum(posted),)]
    assert "Every balance equals" in cluster.manage(three, "check_ledger").stdout


def test_the_singleton_lease_moves_to_another_node_when_its_holder_is_killed(cluster):
    one, two, three = cluster.members
    ttl = 6
    holder = work(cluster, one, f"hold_lease('galera-singleton', 'node1', {ttl})", background=True)
    try:
        assert next_line(holder.stdout) == {"held": "node1"}
        contender = work(
            cluster, two, f"take_lease('galera-singleton', 'node2', {ttl}, {ttl + 60})", background=True
        )
        # The whole node dies: its database member and its worker.
        began = time.monotonic()
        cluster.kill(one)
        holder.kill()
        out, err = contender.communicate(timeout=ttl + 120)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    results = lines(out)
    assert results and results[-1]["taken"] is True, (out, err)
    MEASURED["lease taken over by node2 after its holder was killed"] = (
        f"{time.monotonic() - began:.1f}s (ttl {ttl}s)"
    )
    (held_by,) = cluster.query(three, "SELECT holder FROM cluster_lease WHERE name = 'galera-singleton'")
    assert held_by == ("node2",)


def test_a_node_answers_its_health_check_while_the_cluster_waits_to_evict_a_dead_member(cluster):
    """keepalived's check asks every node's /health/ every second. When a member dies, the
    others' commits (and reads that wait for the cluster) stall until they evict it, some
    seconds later: a health check that waited too would fail on every node at once, and
    the shared IP would have nowhere to go."""
    one, two, _ = cluster.members
    go_at = time.time() + 6  # the process has loaded Django by then
    asker = work(cluster, two, f"health_at({go_at})", background=True)
    time.sleep(max(go_at - 0.5 - time.time(), 0))
    cluster.kill(one)
    out, err = asker.communicate(timeout=120)
    (answer,) = lines(out) or [err]
    assert answer["status"] == 200, answer
    # Answered before the survivors evicted the dead member (they still counted three).
    assert answer["cluster_size"] == 3
    assert answer["body"]["database"] == "Synced, Primary, size 3, ready"


def test_files_made_while_a_node_was_away_reach_it_once_it_is_back(cluster, world):
    one, two, three = cluster.members
    missing = rsync_missing()
    if missing:
        pytest.skip(missing)
    daemons = {m.name: RsyncDaemon(cluster.root / "sync" / m.name).start() for m in (two, three)}
    try:
        work(cluster, one, f"point_sync_at({ {name: d.url for name, d in daemons.items()}!r})")
        # Node 3 goes away whole: its database member and its file-sync target.
        cluster.kill(three)
        daemons["node3"].stop()
        (made,) = work(cluster, one, "make_and_push(['away-1.wav', 'away-2.wav', 'away-3.wav'])")
        ids = sorted(made["files"].values())
        assert sorted(made["results"].values()) == ["failed"] * 3 + ["present"] * 3
        for relative in made["files"]:
            assert (daemons["node2"].root / "recordings" / relative).is_file()
            assert not (daemons["node3"].root / "recordings" / relative).exists()

        # Back: the member rejoins (IST), its target listens again, it asks to be caught up
        # (as its worker does after a restart), and node 1's worker pushes what it owes.
        cluster.restart(three)
        daemons["node3"].start()
        cluster.manage(three, "sync_files", "--reconcile", "node3")
        cluster.manage(one, "sync_files", "--now")

        source = one.directory / "var" / "recordings"
        for relative in made["files"]:
            assert (daemons["node3"].root / "recordings" / relative).read_bytes() == (
                source / relative
            ).read_bytes()
        # Every node's database says the same: all three copies of each file are present.
        expected = sorted([i, node, "present"] for i in ids for node in ("node1", "node2", "node3"))
        for member in cluster.members:
            assert work(cluster, member, f"copy_states({ids})")[0]["states"] == expected
        MEASURED["files caught up on node3 after it was away"] = f"{len(ids)} of {len(ids)}"
    finally:
        for daemon in daemons.values():
            daemon.stop()


def cluster_status(cluster, member) -> tuple[int, dict]:
    """`manage.py cluster_status --json` on `member`: its exit code and its report."""
    process = cluster.spawn(member, "cluster_status", "--json")
    out, _ = process.communicate(timeout=60)
    return process.returncode, json.loads(out)


def test_cluster_status_shows_the_three_nodes_and_a_killed_one_as_stale_within_the_bound(
    cluster, world, monkeypatch
):
    heartbeat, stale_after = 1, 4
    monkeypatch.setenv("CLUSTER_HEARTBEAT_SECONDS", str(heartbeat))
    monkeypatch.setenv("CLUSTER_STALE_SECONDS", str(stale_after))
    monkeypatch.setenv("CLUSTER_LEASE_SECONDS", str(stale_after))
    # Each node's heartbeat, as its worker beats it (the command is the workerless variant).
    beaters = {m.name: cluster.spawn(m, "cluster_heartbeat") for m in cluster.members}
    try:
        deadline = time.monotonic() + 30
        code, report = cluster_status(cluster, cluster.members[0])
        # A node's first beat may land before its Galera state is read: wait for all of it.
        while (
            code != 0 or not all(node["galera"] for node in report["nodes"])
        ) and time.monotonic() < deadline:
            time.sleep(0.5)
            code, report = cluster_status(cluster, cluster.members[0])
        assert code == 0, report
        nodes = {node["name"]: node for node in report["nodes"]}
        assert sorted(nodes) == ["node1", "node2", "node3"]
        for node in nodes.values():
            assert not node["stale"]
            assert node["galera"]["summary"] == "Synced, Primary, size 3, ready"

        one, _two, three = cluster.members
        cluster.kill(three)
        beaters["node3"].kill()
        killed = time.monotonic()
        code, report = cluster_status(cluster, one)
        # Until Galera evicts the dead member it holds every commit, the survivors' heartbeats
        # too: for a moment all three can look stale. Wait for node3 alone.
        while (code, report["stale"]) != (1, ["node3"]) and time.monotonic() - killed < 60:
            time.sleep(0.5)
            code, report = cluster_status(cluster, one)
        seen_after = time.monotonic() - killed
        assert (code, report["stale"]) == (1, ["node3"]), report
        MEASURED["node3 shown stale by cluster_status after kill -9"] = (
            f"{seen_after:.1f}s (stale after {stale_after}s + heartbeat {heartbeat}s, plus the seconds "
            "Galera holds commits until it evicts the dead member)"
        )
        # The survivors' own rows say the cluster shrank to two.
        survivors = {node["name"]: node["galera"]["summary"] for node in report["nodes"] if not node["stale"]}
        deadline = time.monotonic() + 20
        while set(survivors.values()) != {"Synced, Primary, size 2, ready"} and time.monotonic() < deadline:
            time.sleep(0.5)
            _, report = cluster_status(cluster, one)
            survivors = {n["name"]: n["galera"]["summary"] for n in report["nodes"] if not n["stale"]}
        assert survivors == {
            "node1": "Synced, Primary, size 2, ready",
            "node2": "Synced, Primary, size 2, ready",
        }
    finally:
        for beater in beaters.values():
            beater.kill()
            beater.communicate()
