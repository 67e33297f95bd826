"""Kafka Connect standalone worker with the Debezium PostgreSQL connector."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from pipelines.stack.kafka import MAX_MESSAGE_BYTES, java_cmd
from pipelines.stack.postgres import CDC_TABLES, DATABASE
from pipelines.stack.processes import StackError, spawn, stop_pid, tail, wait_until

CONNECTOR = "shop-postgres"
TOPIC_PREFIX = "shop"
SLOT = "shop_debezium"
PUBLICATION = "shop_publication"


def cdc_topics(prefix: str = TOPIC_PREFIX) -> list[str]:
    """The topics the connector writes: one per captured table, plus the transaction BEGIN/END topic."""
    return [f"{prefix}.public.{t}" for t in CDC_TABLES] + [f"{prefix}.transaction"]


def connector_config(pg_port: int) -> dict[str, str]:
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg_port),
        "database.user": "postgres",
        "database.password": "",
        "database.dbname": DATABASE,
        "topic.prefix": TOPIC_PREFIX,
        "table.include.list": ",".join(f"public.{t}" for t in CDC_TABLES),
        "slot.name": SLOT,
        "publication.name": PUBLICATION,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "provide.transaction.metadata": "true",
        "heartbeat.interval.ms": "10000",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }


class Connect:
    name = "connect"

    def __init__(self, stack_dir: Path, jars: Path):
        self.root = stack_dir / "connect"
        self.worker_file = self.root / "worker.properties"
        self.connector_file = self.root / f"{CONNECTOR}.json"
        self.offsets_file = self.root / "offsets.dat"
        self.log_file = stack_dir / "logs" / "connect.log"
        self.jars = jars

    def write_config(self, kafka_port: int, rest_port: int, pg_port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.worker_file.write_text(
            "\n".join([
                f"bootstrap.servers=127.0.0.1:{kafka_port}",
                "key.converter=org.apache.kafka.connect.json.JsonConverter",
                "value.converter=org.apache.kafka.connect.json.JsonConverter",
                "key.converter.schemas.enable=true",
                "value.converter.schemas.enable=true",
                f"offset.storage.file.filename={self.offsets_file}",
                "offset.flush.interval.ms=5000",
                f"producer.max.request.size={MAX_MESSAGE_BYTES}",
                f"producer.buffer.memory={2 * MAX_MESSAGE_BYTES}",
                f"listeners=http://127.0.0.1:{rest_port}",
                "topic.creation.enable=true",
                "plugin.discovery=service_load",
                "",
            ])
        )
        self.connector_file.write_text(
            json.dumps({"name": CONNECTOR, "config": connector_config(pg_port)}, indent=2) + "\n"
        )

    def start(self, kafka_port: int, rest_port: int, pg_port: int) -> int:
        self.write_config(kafka_port, rest_port, pg_port)
        cmd = java_cmd(self.jars, "org.apache.kafka.connect.cli.ConnectStandalone",
                       str(self.worker_file), str(self.connector_file))
        return spawn(cmd, self.log_file, cwd=self.root)

    @staticmethod
    def connector_status(rest_port: int) -> dict:
        url = f"http://127.0.0.1:{rest_port}/connectors/{CONNECTOR}/status"
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read())

    def health(self, rest_port: int) -> tuple[bool, str]:
        try:
            status = self.connector_status(rest_port)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, f"REST not answering ({exc})"
        connector = status.get("connector", {}).get("state")
        tasks = [t.get("state") for t in status.get("tasks", [])]
        ok = connector == "RUNNING" and bool(tasks) and all(t == "RUNNING" for t in tasks)
        return ok, f"connector {connector}, tasks {tasks}"

    def wait_healthy(self, rest_port: int, pid: int, timeout: float) -> None:
        def check() -> bool:
            try:
                status = self.connector_status(rest_port)
            except (urllib.error.URLError, OSError, ValueError):
                return False
            failed = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
            if status.get("connector", {}).get("state") == "FAILED" or failed:
                trace = (failed[0] if failed else status["connector"]).get("trace", "")
                raise StackError(
                    f"connect: connector {CONNECTOR} FAILED: {trace.splitlines()[0] if trace else '?'}; "
                    f"last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            # and its source offsets flushed once (every 5 s): a Connect killed before that has no record
            # of its initial snapshot, so it snapshots again at restart, and the changes streamed
            # meanwhile reach Kafka as current rows only (their history lost)
            return self.health(rest_port)[0] and self.offsets_file.exists()

        wait_until(check, "connect", timeout, self.log_file, pid)

    @staticmethod
    def stop(pid: int, timeout: float = 30) -> None:
        stop_pid(pid, timeout)
