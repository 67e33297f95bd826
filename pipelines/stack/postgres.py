"""Postgres: a private cluster under `<data_dir>/stack/postgres`, logical decoding on, database `shop`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg

from pipelines.stack.processes import StackError, pid_alive, run, tail, wait_pid_gone, wait_until

DATABASE = "shop"
CDC_TABLES = ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
_INSTALL_HINT = "apt-get install postgresql"


def bindir() -> Path:
    """Folder of initdb/pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(Path(out.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise StackError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: install them ({_INSTALL_HINT})")


class Postgres:
    name = "postgres"

    def __init__(self, stack_dir: Path, schema_file: Path):
        self.root = stack_dir / "postgres"
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_file = stack_dir / "logs" / "postgres.log"
        self.schema_file = schema_file

    # -- preconditions -------------------------------------------------------------------------
    def check_prerequisites(self) -> None:
        self.bin = bindir()
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise StackError(
                    f"user `postgres` missing (PostgreSQL refuses to run as root): install it ({_INSTALL_HINT})"
                ) from None
            if not shutil.which("runuser"):
                raise StackError("`runuser` not found: install it (apt-get install util-linux)")

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def _allow_traverse(self) -> None:
        """The postgres user must reach its data dir: grant search (x, not read) on root-owned ancestors
        that lack it, e.g. pytest's 0700 temporary folders."""
        if os.geteuid() != 0:
            return
        for folder in self.root.resolve().parents:
            mode = folder.stat().st_mode
            if not mode & 0o001 and folder.stat().st_uid == 0:
                os.chmod(folder, (mode & 0o7777) | 0o001)

    def _chown(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in paths:
                os.chown(path, user.pw_uid, user.pw_gid)

    # -- lifecycle -----------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.root, self.data, self.socket_dir)
        self._allow_traverse()
        # runuser keeps root's cwd, which postgres may not be allowed to read
        run(self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-instructions"),
            "postgres: initdb", timeout=120, cwd=self.root)
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(
                "\n# lakehouse local stack: trust, logical replication for Debezium\n"
                "local   all          all                    trust\n"
                "host    all          all    127.0.0.1/32    trust\n"
                "local   replication  all                    trust\n"
                "host    replication  all    127.0.0.1/32    trust\n"
            )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# lakehouse local stack\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "wal_level = logical\n"
                "max_wal_senders = 8\n"
                "max_replication_slots = 8\n"
                "shared_buffers = 64MB\n"
                "synchronous_commit = off\n"
            )

    def start(self, port: int, timeout: float) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        # pg_ctl forks the postmaster into its own session; -w waits until it accepts connections
        run(self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                              "-w", "-t", str(int(timeout)), "-o", f"-p {port}", "start"),
            f"postgres: pg_ctl start (log {self.log_file}:\n{tail(self.log_file)})", timeout=timeout + 10,
            cwd=self.root)
        pid = self.pid()
        if pid is None:
            raise StackError(f"postgres: started but no postmaster.pid; last lines of {self.log_file}:\n{tail(self.log_file)}")
        wait_until(lambda: self.healthy(port, "postgres"), "postgres", timeout, self.log_file, pid)
        return pid

    def stop(self, timeout: float = 30, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` (clients disconnected, checkpoint) or `immediate` (a crash: recovery at start)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            run(self._as_postgres(str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                                  "-t", str(int(timeout)), "stop"), "postgres: pg_ctl stop", timeout=timeout + 10,
                cwd=self.root)
        except StackError:
            pass
        if not wait_pid_gone(pid, 5):
            from pipelines.stack.processes import stop_pid

            stop_pid(pid, timeout=10)

    # -- health and setup ----------------------------------------------------------------------
    @staticmethod
    def dsn(port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def healthy(self, port: int, database: str = DATABASE) -> bool:
        try:
            with psycopg.connect(self.dsn(port, database), connect_timeout=3) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def ensure_database(self, port: int) -> None:
        with psycopg.connect(self.dsn(port, "postgres"), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'create database "{DATABASE}"')

    def ensure_schema(self, port: int) -> None:
        """Apply the OLTP schema if any CDC table is missing; give every CDC table REPLICA IDENTITY FULL."""
        with psycopg.connect(self.dsn(port), autocommit=True, connect_timeout=5) as conn:
            if self._missing_tables(conn):
                if not self.schema_file.exists():
                    raise StackError(
                        f"postgres: schema file {self.schema_file} not found; it defines the tables "
                        f"{', '.join(CDC_TABLES)} that Debezium captures"
                    )
                conn.execute(self.schema_file.read_text())
            missing = self._missing_tables(conn)
            if missing:
                raise StackError(f"postgres: {self.schema_file} did not create table(s) {', '.join(missing)}")
            rows = conn.execute(
                "select c.relname, c.relreplident from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'public' and c.relname = any(%s)",
                (list(CDC_TABLES),),
            ).fetchall()
            for table, identity in rows:
                if identity != "f":
                    conn.execute(f'alter table public."{table}" replica identity full')

    @staticmethod
    def _missing_tables(conn: psycopg.Connection) -> list[str]:
        present = {
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'public'"
            ).fetchall()
        }
        return [t for t in CDC_TABLES if t not in present]
