"""Apache Kafka: one KRaft node (broker + controller) from the Maven jars, run with the machine's Java."""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.stack.processes import StackError, run, spawn, stop_pid, wait_until

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
HEAP = "-Xmx512m"

_quiet = logging.getLogger("pipelines.stack.kafka.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def admin(bootstrap: str) -> AdminClient:
    # librdkafka logs every refused connection; while we poll for start-up that is noise
    return AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet, "socket.connection.setup.timeout.ms": 3000})


def new_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid().toString(): url-safe base64 of 16 random bytes, no padding, and (as
    Kafka does) never starting with '-', which StorageTool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def java_cmd(jars: Path, main: str, *args: str, heap: str = HEAP) -> list[str]:
    return [
        "java", "-Xms64m", heap, "-XX:+ExitOnOutOfMemoryError", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=50", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", f"{jars}/*", main, *args,
    ]


class Kafka:
    name = "kafka"

    def __init__(self, stack_dir: Path, jars: Path):
        self.root = stack_dir / "kafka"
        self.log_dir = self.root / "data"
        self.config = self.root / "server.properties"
        self.log_file = stack_dir / "logs" / "kafka.log"
        self.jars = jars

    def write_config(self, port: int, controller_port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Static quorum (controller.quorum.voters): the controller's port may change between starts.
        self.config.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "inter.broker.listener.name=PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.log_dir}",
                "num.partitions=1",
                "default.replication.factor=1",
                "auto.create.topics.enable=true",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "min.insync.replicas=1",
                "group.initial.rebalance.delay.ms=0",
                # a wide row (Postgres text/jsonb up to tens of MB) must not stop CDC at Kafka's 1 MB default
                f"message.max.bytes={MAX_MESSAGE_BYTES}",
                "num.network.threads=2",
                "num.io.threads=2",
                "log.retention.hours=-1",
                "log.segment.bytes=67108864",
                "",
            ])
        )

    def format_storage(self) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        id_file = self.root / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        run(java_cmd(self.jars, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                     f"--cluster-id={id_file.read_text().strip()}", "-c", str(self.config), heap="-Xmx256m"),
            "kafka: StorageTool format", timeout=120, cwd=self.root)

    def start(self, port: int, controller_port: int, timeout: float) -> int:
        self.write_config(port, controller_port)
        self.format_storage()
        pid = spawn(java_cmd(self.jars, "kafka.Kafka", str(self.config)), self.log_file, cwd=self.root)
        return pid

    def wait_healthy(self, port: int, pid: int, timeout: float) -> None:
        wait_until(lambda: self.healthy(port), "kafka", timeout, self.log_file, pid)

    @staticmethod
    def healthy(port: int) -> bool:
        try:
            metadata = admin(f"127.0.0.1:{port}").list_topics(timeout=3)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    @staticmethod
    def ensure_topics(port: int, topics: list[str], timeout: float = 30) -> None:
        """Create `topics` (1 partition, RF 1) unless they exist."""
        client = admin(f"127.0.0.1:{port}")
        existing = set(client.list_topics(timeout=10).topics)
        wanted = [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics if t not in existing]
        if not wanted:
            return
        for topic, future in client.create_topics(wanted, request_timeout=timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise StackError(f"kafka: cannot create topic {topic}: {exc}") from exc

    @staticmethod
    def stop(pid: int, timeout: float = 30) -> None:
        stop_pid(pid, timeout)
