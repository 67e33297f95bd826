"""Source tables added to the capture while the pipeline runs.

Debezium creates a topic `<prefix>.<schema>.<table>` for every table its include list lets through,
including tables created after the pipeline was written. Bronze ingests such a topic like the others
(`bronze/cdc_<table>`), so nothing is lost while Kafka's retention runs; silver does not model it until
someone adds it, and the runs say so.
"""

from __future__ import annotations

from confluent_kafka import KafkaException

from pipelines.cdc.ingest import (
    CDC_STREAMS, SOURCE_TABLES, TRANSACTIONS, bronze_table_for, bronze_table_name, kafka_consumer, topic_for,
)
from pipelines.settings import Settings


def undeclared_source_topics(settings: Settings, timeout: float = 10.0) -> list[str]:
    """The connector's table topics on the broker that are not one of the shop's source tables."""
    consumer = kafka_consumer(settings)
    try:
        topics = consumer.list_topics(timeout=timeout).topics
    except KafkaException:  # the broker does not answer: the ingest that follows says so, with the reason
        return []
    finally:
        consumer.close()
    known = {topic_for(settings, table) for table in SOURCE_TABLES} | {topic_for(settings, TRANSACTIONS)}
    prefix = f"{settings.topic_prefix}."
    return sorted(t for t in topics
                  if t.startswith(prefix) and t.count(".") == prefix.count(".") + 1 and t not in known)


def ingestable(topics: list[str]) -> list[str]:
    """Those of `topics` whose bronze table (named after the table alone) no other topic writes."""
    taken = {bronze_table_name(stream) for stream in CDC_STREAMS}
    names = [bronze_table_for(topic) for topic in topics]
    return [t for t, name in zip(topics, names) if name not in taken and names.count(name) == 1]


def undeclared_topics_note(topics: list[str]) -> str:
    ingested = ingestable(topics)
    note = (f"{len(topics)} source table topic(s) no model reads yet: {', '.join(topics)}; "
            f"`lakehouse ingest cdc` keeps {len(ingested)} in bronze (bronze/cdc_<table>)")
    left = sorted(set(topics) - set(ingested))
    if left:
        note += f"; not {', '.join(left)}, whose table name another topic's bronze table has"
    return note + "; add the table to the dbt project (and pipelines/cdc/ingest.py) to model it"
