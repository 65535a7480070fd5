"""A real three-node Galera cluster on loopback, for the `galera` tests.

Each member is a `mariadbd` with the galera-4 provider, started from the settings that
`apps.cluster.galera.galera_cnf` renders for production (only addresses, ports, paths and
memory differ), under one temporary directory. Node 1 bootstraps the cluster
(`--wsrep-new-cluster`); nodes 2 and 3 join it by state snapshot transfer (rsync). The
machine's own MariaDB (3306) is never touched: every member has its own ports, socket and
data directory, and reads no option file but its own.

The product runs for real against each member: `manage` starts `manage.py` with
DATABASE_URL pointing at that member, as a node's workers would.

Given test hosts (tests/cluster/netns.py), member i runs in node i's namespace instead, on
that node's address, as on a real node: the node's own processes reach it there, and a node
killed whole takes its member with it.
"""

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from django.test import override_settings

from apps.cluster.galera import Ports, galera_cnf
from tests.cluster import netns
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
DATABASE = "h4_galera"
START_TIMEOUT = 120  # seconds for one member to reach Synced (an SST included)
RECOVERED = re.compile(r"WSREP: Recovered position:? ([0-9a-f-]{36}:-?\d+)")
IST_RECEIVED = re.compile(r"WSREP: Receiving IST: (\d+) writesets")


def missing() -> str | None:
    """Why the cluster cannot run here, or None."""
    for binary in ("mariadbd", "mariadb-install-db", "mariadb", "rsync"):
        if not shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"{binary} is not installed (Debian: mariadb-server, rsync)"
    if not PROVIDER.exists():
        return f"the galera-4 provider {PROVIDER} is not installed (Debian: galera-4)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("mysql")
        except KeyError:
            return "running as root but there is no `mysql` user for mariadbd to run as"
    return None


def binary(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or name


@dataclass(frozen=True)
class Rejoin:
    """How a restarted member came back."""

    seconds: float  # from `--wsrep-recover` to Synced in a cluster of full size
    full_copy: bool  # True: a state snapshot transfer (the whole datadir) instead of IST
    writesets: int  # what IST replayed
    position: str  # uuid:seqno the member recovered from its own InnoDB


class ClusterError(RuntimeError):
    """The cluster did not reach the state a test needs; carries the member's log tail."""


@dataclass
class Member:
    """One mariadbd of the cluster."""

    index: int
    directory: Path
    ports: Ports
    address: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    log_offset: int = 0
    started: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket(self) -> Path:
        return self.directory / "mariadbd.sock"

    @property
    def tmpdir(self) -> Path:
        """The member's own: MariaDB names temporary tables by pid, and /tmp is shared with
        every other mariadbd this machine ever ran (a CI run once failed in the bootstrap with
        "Could not remove temporary table '/tmp/#sql-temptable-…'")."""
        return self.directory / "tmp"

    @property
    def cnf(self) -> Path:
        return self.directory / "my.cnf"

    @property
    def log(self) -> Path:
        return self.directory / "error.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, database: str = DATABASE) -> str:
        """Over TCP at the member's address: for processes on its node (its namespace)."""
        return f"mysql://root@{self.address}:{self.ports.sql}/{database}"

    def log_since_start(self) -> str:
        with contextlib.suppress(FileNotFoundError), self.log.open(errors="replace") as handle:
            handle.seek(self.log_offset)
            return handle.read()
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


class GaleraCluster:
    """Start, query, kill and heal a loopback Galera cluster of `size` members."""

    def __init__(self, size: int = 3, *, hosts=None) -> None:
        """`hosts`: a netns.Hosts of at least `size` nodes, member i in node i's namespace."""
        # Not pytest's tmp_path: its parents are private to root, and mariadbd runs as mysql.
        self.root = Path(tempfile.mkdtemp(prefix="smartswitch-galera-"))
        self.root.chmod(0o755)
        self.hosts = hosts
        ports = free_ports(4 * size)
        self.members = [
            Member(
                i + 1,
                self.root / f"node{i + 1}",
                Ports(*ports[4 * i : 4 * i + 4]),
                hosts.address(i + 1) if hosts else "127.0.0.1",
            )
            for i in range(size)
        ]
        self.timings: dict[str, float] = {}
        # Also when pytest itself dies of an exception outside the fixture's finally.
        atexit.register(self.stop)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        for member in self.members:
            member.directory.mkdir()
            member.datadir.mkdir()
            member.tmpdir.mkdir()
            (member.directory / "prefix-index").mkdir()
            self._write_cnf(member)
        first = self.members[0]
        self._install(first)
        self._own(self.root)
        self._launch(first, "--wsrep-new-cluster")
        self.wait_synced(first)
        self._socket_sql(
            first,
            # Root over TCP (Django connects by address): the installed root@localhost only
            # accepts the unix socket. Users and DDL replicate to the joiners.
            f"CREATE USER IF NOT EXISTS 'root'@'{self._clients}';"
            f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{self._clients}' WITH GRANT OPTION;"
            f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
        )
        for member in self.members[1:]:
            self._launch(member)
        for member in self.members[1:]:
            self.wait_synced(member)
        self.wait_size(len(self.members))
        self.timings["cluster start"] = time.monotonic() - began

    def stop(self) -> None:
        """Stop every member still running (clean shutdown, then SIGKILL), delete the files."""
        for member in self.members:
            if member.alive:
                member.process.terminate()
        for member in self.members:
            if member.process is not None:
                try:
                    member.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    member.process.kill()
                    member.process.wait()
        if not os.environ.get("GALERA_KEEP_FILES"):
            shutil.rmtree(self.root, ignore_errors=True)

    def kill(self, member: Member) -> None:
        """kill -9: no shutdown, no goodbye to the group; the others find out by timeout."""
        member.process.send_signal(signal.SIGKILL)
        member.process.wait()

    def restart(self, member: Member) -> "Rejoin":
        """Start a killed member as systemd's galera_recovery would, and wait until it is Synced."""
        began = time.monotonic()
        position = self._recover_position(member)
        self._launch(member, f"--wsrep-start-position={position}")
        self.wait_synced(member)
        self.wait_size(len(self.members))
        log = member.log_since_start()
        # Galera 4 runs the SST script for an IST too (it transfers nothing then): the
        # script's own summary line tells the two apart.
        ist = IST_RECEIVED.search(log)
        return Rejoin(
            seconds=time.monotonic() - began,
            full_copy="rsync SST completed on joiner" in log,
            writesets=int(ist.group(1)) if ist else 0,
            position=position,
        )

    # -- reading ----------------------------------------------------------------------

    @property
    def _clients(self) -> str:
        """Where root may connect from over TCP: loopback, or the test network."""
        if self.hosts is None:
            return "127.0.0.1"
        return f"{netns.TEST_NET.network_address}/{netns.TEST_NET.netmask}"

    def connect(self, member: Member, database: str | None = DATABASE) -> pymysql.Connection:
        if self.hosts is not None:  # this process is outside the members' namespaces
            return pymysql.connect(
                unix_socket=str(member.socket), user="root", database=database, autocommit=True
            )
        return pymysql.connect(
            host="127.0.0.1",
            port=member.ports.sql,
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=5,
            read_timeout=60,
        )

    def query(self, member: Member, sql: str, params=None) -> list[tuple]:
        with contextlib.closing(self.connect(member)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def status(self, member: Member) -> dict[str, str]:
        out = self._socket_sql(member, "SHOW GLOBAL STATUS LIKE 'wsrep_%'", batch=True)
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def wait_synced(self, member: Member, timeout: float = START_TIMEOUT) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            if not member.alive:
                raise ClusterError(
                    f"{member.name} exited ({member.process.returncode}):\n{member.log_tail()}"
                )
            with contextlib.suppress(subprocess.CalledProcessError):
                status = self.status(member)
                if status.get("wsrep_local_state_comment") == "Synced" and status.get("wsrep_ready") == "ON":
                    return status
            time.sleep(0.5)
        raise ClusterError(f"{member.name} not Synced after {timeout}s ({status}):\n{member.log_tail()}")

    def wait_size(self, size: int, timeout: float = 60) -> None:
        """Every running member sees a primary component of `size` members."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sizes = {m.name: self.status(m).get("wsrep_cluster_size") for m in self.members if m.alive}
            if set(sizes.values()) == {str(size)}:
                return
            time.sleep(0.5)
        raise ClusterError(f"cluster size is not {size}: {sizes}")

    # -- the product on a member ------------------------------------------------------

    def environment(self, member: Member) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": member.url(),
            "NODE_NAME": member.name,
            "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
            "SMARTSWITCH_VAR_DIR": str(member.directory / "var"),
            "PREFIX_INDEX_DIR": str(member.directory / "prefix-index"),
            "LOG_LEVEL": "WARNING",
        }

    def manage(self, member: Member, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run `manage.py *args` as node `member` would; raise with its output if it fails."""
        done = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(member),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"manage.py {args[0]} on {member.name} exited {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def spawn(self, member: Member, *args: str) -> subprocess.Popen:
        """Start `manage.py *args` on `member` in the background (stdout/stderr piped)."""
        return subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(member),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # -- internals --------------------------------------------------------------------

    def _write_cnf(self, member: Member) -> None:
        members = [(m.address, m.ports) for m in self.members]
        # A small gcache: three of them on one test machine. Still ample for what one
        # member misses during a test, so a restart is served by IST.
        with override_settings(GALERA_GCACHE_SIZE="64M", GALERA_SST_METHOD="rsync"):
            rendered = galera_cnf(
                name=member.name, address=member.address, members=members, ports=member.ports
            )
        run_as = "user = mysql\n" if os.geteuid() == 0 else ""
        member.cnf.write_text(
            f"""\
[mariadbd]
{run_as}datadir = {member.datadir}
socket = {member.socket}
tmpdir = {member.tmpdir}
pid-file = {member.directory / "mariadbd.pid"}
log-error = {member.log}
skip-name-resolve
performance_schema = OFF
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
max_connections = 100

"""
            + rendered
        )

    def _own(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam("mysql")
        for directory, _, files in os.walk(path):
            os.chown(directory, user.pw_uid, user.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid)

    def _install(self, member: Member) -> None:
        command = [
            binary("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={member.datadir}",
            f"--tmpdir={member.tmpdir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            command.append("--user=mysql")
            self._own(member.directory)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
        if done.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")

    def _launch(self, member: Member, *extra: str) -> None:
        member.log_offset = member.log.stat().st_size if member.log.exists() else 0
        member.started.append(time.monotonic())
        command = [binary("mariadbd"), f"--defaults-file={member.cnf}", *extra]
        streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if self.hosts is not None:
            member.process = self.hosts.run(member.index, command, **streams)
            return
        # start_new_session: a ^C to pytest reaches pytest, which stops us cleanly.
        member.process = subprocess.Popen(command, **streams, start_new_session=True)  # noqa: S603

    def _recover_position(self, member: Member) -> str:
        """The last committed position in the member's InnoDB, as `mariadbd --wsrep-recover` finds it.

        After kill -9, grastate.dat says seqno -1: started as is, the member would ask for a
        full SST. With the recovered position it asks only for what it missed (IST).
        """
        offset = member.log.stat().st_size
        subprocess.run(  # noqa: S603
            [binary("mariadbd"), f"--defaults-file={member.cnf}", "--wsrep-recover"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        with member.log.open(errors="replace") as handle:
            handle.seek(offset)
            found = RECOVERED.findall(handle.read())
        if not found:
            raise ClusterError(f"--wsrep-recover found no position for {member.name}:\n{member.log_tail()}")
        return found[-1]

    def _socket_sql(self, member: Member, sql: str, *, batch: bool = False) -> str:
        command = [binary("mariadb"), "--no-defaults", f"--socket={member.socket}", "-uroot", "-e", sql]
        if batch:
            command[4:4] = ["-N", "-B"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
        return done.stdout
