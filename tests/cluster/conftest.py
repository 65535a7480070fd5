"""The three-node Galera cluster of the `galera` tests: one per test session.

Started on first use, migrated once through node 1 (DDL replicates), stopped at the end of
the session whatever happened. A test that kills a member leaves it to `cluster` to heal:
every test starts with all three members Synced.
"""

import pytest

from tests.cluster.galera_harness import GaleraCluster, missing

# What the galera tests measured, printed at the end of the run (and quoted in reports).
MEASURED: dict[str, str] = {}


@pytest.fixture(scope="session")
def galera_cluster():
    reason = missing()
    if reason:
        pytest.skip(f"no Galera cluster here: {reason}")
    cluster = GaleraCluster(size=3)
    try:
        cluster.start()
        MEASURED["cluster start (3 members Synced)"] = f"{cluster.timings['cluster start']:.1f}s"
        cluster.manage(cluster.members[0], "migrate", "--no-input", "-v0", timeout=600)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(galera_cluster):
    """The session's cluster with every member back and Synced."""
    for member in galera_cluster.members:
        if not member.alive:
            galera_cluster.restart(member)
    galera_cluster.wait_size(len(galera_cluster.members))
    return galera_cluster


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("galera cluster measurements")
        for what, value in MEASURED.items():
            terminalreporter.write_line(f"{what}: {value}")
