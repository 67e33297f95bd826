"""A table added to Debezium's capture while the pipeline runs: its topic is found, ingested into bronze by
`lakehouse ingest cdc` (nothing is lost while Kafka's retention runs) and named in a warning. Against
librdkafka's in-process mock cluster."""

import json
import os
import subprocess
import sys
from pathlib import Path

from deltalake import DeltaTable

from pipelines.cdc.discovery import ingestable, undeclared_source_topics
from pipelines.cdc.ingest import CDC_STREAMS, topic_for
from tests.unit.test_cdc_ingest import CREATE, mock_kafka, settings  # noqa: F401 (fixtures)

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def _produce(producer, topic: str, n: int) -> None:
    for i in range(n):
        producer.produce(topic, key=json.dumps({"id": i}), value=json.dumps(CREATE), partition=0)
    producer.flush(10)


def test_topics_of_tables_the_project_does_not_know_are_found_and_those_without_a_clash_ingestable(mock_kafka, settings):
    producer, _ = mock_kafka
    for topic in ("shop.public.orders", "shop.public.coupons", "shop.archive.orders", "shop.transaction", "other.public.x"):
        _produce(producer, topic, 1)
    found = undeclared_source_topics(settings)
    assert found == ["shop.archive.orders", "shop.public.coupons"]
    assert ingestable(found) == ["shop.public.coupons"]  # archive.orders would land in bronze/cdc_orders


def test_ingest_cdc_keeps_a_new_tables_topic_in_bronze_and_warns(mock_kafka, settings, tmp_path):
    producer, bootstrap = mock_kafka
    for topic in [topic_for(settings, stream) for stream in CDC_STREAMS]:  # the connector's topics exist
        _produce(producer, topic, 1)
    _produce(producer, "shop.public.coupons", 5)
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_KAFKA_BOOTSTRAP": bootstrap}
    env.pop("LAKEHOUSE_CONFIG", None)
    done = subprocess.run([LAKEHOUSE, "ingest", "cdc"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "shop.public.coupons" in done.stderr and "warning" in done.stderr
    offsets = DeltaTable(str(tmp_path / "lake" / "bronze" / "cdc_coupons")).to_pyarrow_table(columns=["offset"])
    assert sorted(offsets["offset"].to_pylist()) == [0, 1, 2, 3, 4]
