"""A throwaway PostgreSQL cluster for the tests: initdb/pg_ctl under a temp dir, never the host's.

The server listens on a unix socket in its own directory and on a random loopback port (for
the TCP proxy tests); as root it runs as `nobody` (postgres refuses root). Each test gets its
own database, made from a template that already has cronsup's schema (fast).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import free_port
from sysdeps import need

BIN = "/usr/lib/postgresql/15/bin"


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sock"
        self.port = free_port()
        self.logfile = root / "server.log"
        self.user = "cronsup_test"
        self._as = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._as = (nobody.pw_uid, nobody.pw_gid)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        def drop() -> None:
            if self._as:
                os.setgid(self._as[1])
                os.setuid(self._as[0])
        return subprocess.run(argv, preexec_fn=drop, capture_output=True, text=True, check=check,
                              timeout=120, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"})

    def init(self) -> None:
        need("postgresql", f"{BIN}/initdb")
        self.sockets.mkdir(parents=True)
        for path in (self.root, self.sockets):
            if self._as:
                os.chown(path, *self._as)
        self._run(f"{BIN}/initdb", "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.sockets}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
                       "shared_buffers = 32MB\n")
        self.start()

    def start(self) -> None:
        self._run(f"{BIN}/pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(f"{BIN}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def url(self, db: str = "postgres", *, port: int | None = None) -> str:
        if port is not None:  # TCP (e.g. through a proxy)
            return f"postgresql://{self.user}@127.0.0.1:{port}/{db}"
        return f"postgresql://{self.user}@/{db}?host={self.sockets}&port={self.port}"

    def admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self, template: str | None = None) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name


@pytest.fixture(scope="session")
def pg_cluster():
    root = Path(tempfile.mkdtemp(prefix="cronsup-pg-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root)
    try:
        cluster.init()
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"cannot start a throwaway PostgreSQL: {e.stderr or e.stdout}")
    # A template with the schema: each test's CREATE DATABASE copies it in milliseconds.
    from cronsup.store import open_store
    cluster.admin('CREATE DATABASE "cronsup_template"')
    open_store(cluster.url("cronsup_template")).close()
    yield cluster
    cluster.stop("immediate")
    # A hundred databases are tens of thousands of files, 30-40 s to unlink on a slow disk:
    # removed in the background instead of at the end of the suite.
    subprocess.Popen(["rm", "-rf", "--", str(root)], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database with cronsup's schema, for one test."""
    return pg_cluster.url(pg_cluster.new_database("cronsup_template"))
