"""Benchmark (issue 4): bronze CDC ingest throughput against a bare confluent-kafka consumer.

    .venv/bin/python bench/ingest_cdc.py [--events 1000000] [--stages baseline,ours,baseline]

Starts only the Kafka component of the local stack in a temp data dir, produces N Debezium change
events (JsonConverter with schemas enabled, shaped exactly like the connector's events for
`public.orders` and `public.order_items`, updates with REPLICA IDENTITY FULL `before` images), then in
the same run measures, each in a fresh subprocess so its peak RSS is its own:

  baseline  a bare confluent-kafka Consumer, assign() from the beginning, reads every message of the
            topics to the high-water mark and touches msg.value(); nothing else
  ours      pipelines.cdc.ingest.ingest_topic(settings, topic) for each topic into a fresh temp lake;
            afterwards the bronze row count (Delta log stats) must equal N

Prints both rates, the ratio (ours / baseline; the best run of each), ours' peak RSS, and writes
bench/results/ingest_cdc.json. Target: ratio >= 0.5, peak RSS < 2 GiB.

`--profile out.prof` runs ours under cProfile (slower; use fewer events). `--ingest-module` swaps in
another module with the same `ingest_topic` (e.g. a prototype on PYTHONPATH) for A/B runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _measure import machine, peak_rss_bytes, rate_summary, stages_from, utc_timestamp, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest_cdc.json"
FIXTURES = ROOT / "tests" / "fixtures" / "local"
PREFIX = "shop"
TOPICS = (f"{PREFIX}.public.orders", f"{PREFIX}.public.order_items")
# share of events per topic: an order gets created, goes through a few status updates, has ~2-3 items
TOPIC_SHARE = {TOPICS[0]: 0.45, TOPICS[1]: 0.55}
OPS = {TOPICS[0]: (("c", 0.30), ("u", 0.65), ("d", 0.05)), TOPICS[1]: (("c", 0.80), ("u", 0.15), ("d", 0.05))}


# ---------------------------------------------------------------------------------------------------
# Debezium events
# ---------------------------------------------------------------------------------------------------
def _dumps(obj) -> str:
    # Kafka Connect's JsonConverter (Jackson) writes compact JSON
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _col(name: str, kind: str, optional: bool = False, **extra) -> dict:
    types = {
        "uuid": {"type": "string", "name": "io.debezium.data.Uuid", "version": 1},
        "ts": {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1},
        "dec": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                "parameters": {"scale": "2", "connect.decimal.precision": "12"}},
        "json": {"type": "string", "name": "io.debezium.data.Json", "version": 1},
        "text": {"type": "string"},
        "int32": {"type": "int32"},
    }
    out = {**types[kind], "optional": optional, **extra, "field": name}
    # field order as the JsonConverter writes it: type, optional, name, version, parameters, default, field
    order = ["type", "optional", "name", "version", "parameters", "default", "field"]
    return {k: out[k] for k in order if k in out}


_AUDIT = [_col("created_at", "ts"), _col("created_by", "text"), _col("updated_at", "ts"), _col("updated_by", "text"),
          _col("version", "int32", default=1), _col("deleted_at", "ts", True), _col("deleted_by", "text", True)]
ORDER_ITEM_COLUMNS = [
    _col("order_item_id", "uuid"), _col("order_id", "uuid"), _col("product_id", "uuid"), _col("quantity", "int32"),
    _col("unit_price", "dec"), _col("discount_amount", "dec", default="AA=="), _col("line_total", "dec"), *_AUDIT,
]


def _orders_envelope() -> dict:
    """The schema block of a real `shop.public.orders` event captured from the stack's connector."""
    return json.loads((FIXTURES / "pg_shop_orders_u.value.json").read_text())["schema"]


def _envelope_for(table: str, columns: list[dict]) -> dict:
    """Same envelope as orders (source block, transaction block), with `table`'s row struct."""
    envelope = json.loads(json.dumps(_orders_envelope()))
    for f in envelope["fields"]:
        if f["field"] in ("before", "after"):
            f["fields"] = columns
            f["name"] = f"{PREFIX}.public.{table}.Value"
    envelope["name"] = f"{PREFIX}.public.{table}.Envelope"
    return envelope


def _key_schema(table: str, pk: str) -> dict:
    return {"type": "struct", "fields": [_col(pk, "uuid")], "optional": False, "name": f"{PREFIX}.public.{table}.Key"}


def _decimal(cents: int) -> str:
    """Connect Decimal as JsonConverter writes it: base64 of the minimal two's-complement big-endian bytes."""
    return base64.b64encode(cents.to_bytes((cents.bit_length() + 8) // 8, "big", signed=True)).decode()


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


CITIES = [("Manchester", "GB"), ("Austin", "US"), ("Lyon", "FR"), ("Berlin", "DE"), ("Osaka", "JP"), ("Porto", "PT")]
NAMES = ["Zoe Novak", "Emma Okafor", "Liam Chen", "Noah Silva", "Ava Kowalski", "Mia Haddad", "Lucas Berg"]
STREETS = ["Market Sq", "High St", "Station Rd", "Rue de la Paix", "Hauptstr.", "Elm Ave"]
STATUSES = ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED"]


class EventGenerator:
    """Debezium change events (key bytes, value bytes) for orders and order_items."""

    def __init__(self, seed: int = 4):
        self.rng = random.Random(seed)
        self.schema_text = {
            TOPICS[0]: _dumps(_orders_envelope()),
            TOPICS[1]: _dumps(_envelope_for("order_items", ORDER_ITEM_COLUMNS)),
        }
        self.key_schema_text = {
            TOPICS[0]: _dumps(_key_schema("orders", "order_id")),
            TOPICS[1]: _dumps(_key_schema("order_items", "order_item_id")),
        }
        self.pk = {TOPICS[0]: "order_id", TOPICS[1]: "order_item_id"}
        self.table = {TOPICS[0]: "orders", TOPICS[1]: "order_items"}
        self.clock = datetime(2026, 11, 1, tzinfo=timezone.utc)
        self.lsn = 26_000_000
        self.tx = 800

    def _order(self, t: datetime) -> dict:
        rng = self.rng
        subtotal = rng.randint(500, 90_000)
        discount = rng.choice((0, 0, 0, subtotal // 10))
        tax = (subtotal - discount) * 2 // 10
        shipping = rng.choice((0, 599, 999))
        city, country = rng.choice(CITIES)
        address = {"city": city, "name": rng.choice(NAMES), "line1": f"{rng.randint(1, 300)} {rng.choice(STREETS)}",
                   "country": country, "postal_code": f"{rng.randint(10000, 99999)}"}
        stamp = _ts(t)
        return {
            "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "customer_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "status": "PENDING", "order_ts": stamp,
            "subtotal": _decimal(subtotal), "discount_amount": _decimal(discount), "tax_amount": _decimal(tax),
            "shipping_amount": _decimal(shipping), "total_amount": _decimal(subtotal - discount + tax + shipping),
            "currency": "USD" if country == "US" else ("GBP" if country == "GB" else ("JPY" if country == "JP" else "EUR")),
            # Postgres jsonb text, as Debezium sends io.debezium.data.Json
            "shipping_address": json.dumps(address),
            "created_at": stamp, "created_by": "order-service", "updated_at": stamp, "updated_by": "order-service",
            "version": 1, "deleted_at": None, "deleted_by": None,
        }

    def _order_item(self, t: datetime) -> dict:
        rng = self.rng
        qty = rng.randint(1, 5)
        price = rng.randint(199, 25_000)
        discount = rng.choice((0, 0, price * qty // 20))
        stamp = _ts(t)
        return {
            "order_item_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "product_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "quantity": qty, "unit_price": _decimal(price), "discount_amount": _decimal(discount),
            "line_total": _decimal(price * qty - discount),
            "created_at": stamp, "created_by": "order-service", "updated_at": stamp, "updated_by": "order-service",
            "version": 1, "deleted_at": None, "deleted_by": None,
        }

    def _updated(self, topic: str, row: dict, t: datetime) -> dict:
        new = dict(row)
        if topic == TOPICS[0]:
            new["status"] = STATUSES[min(STATUSES.index(row["status"]) + 1 + self.rng.randint(0, 1), 4)]
        else:
            new["quantity"] = row["quantity"] + 1
        new["updated_at"] = _ts(t)
        new["version"] = row["version"] + 1
        return new

    def event(self, topic: str) -> tuple[bytes, bytes]:
        rng = self.rng
        self.clock += timedelta(milliseconds=rng.randint(1, 40))
        self.lsn += rng.randint(200, 900)
        self.tx += 1
        t = self.clock
        x = rng.random()
        op = "c"
        for candidate, share in OPS[topic]:
            if x < share:
                op = candidate
                break
            x -= share
        make = self._order if topic == TOPICS[0] else self._order_item
        row = make(t - timedelta(minutes=5) if op != "c" else t)
        before, after = None, row
        if op == "u":
            before, after = row, self._updated(topic, row, t)
        elif op == "d":
            before, after = row, None
        ts_ms = int(t.timestamp() * 1000)
        source = {
            "version": "3.6.1.Final", "connector": "postgresql", "name": PREFIX, "ts_ms": ts_ms - rng.randint(5, 900),
            "snapshot": "false", "db": "shop", "sequence": f'["{self.lsn - 600}","{self.lsn}"]',
            "ts_us": ts_ms * 1000 + 123, "ts_ns": ts_ms * 1_000_000 + 123_000, "schema": "public",
            "table": self.table[topic], "txId": self.tx, "lsn": self.lsn, "xmin": None, "origin": None,
            "origin_lsn": None,
        }
        payload = {
            "before": before, "after": after, "source": source,
            "transaction": {"id": f"{self.tx}:{self.lsn}", "total_order": rng.randint(1, 4), "data_collection_order": 1},
            "op": op, "ts_ms": ts_ms, "ts_us": ts_ms * 1000 + 166, "ts_ns": ts_ms * 1_000_000 + 166_091,
        }
        value = f'{{"schema":{self.schema_text[topic]},"payload":{_dumps(payload)}}}'.encode()
        pk = self.pk[topic]
        key = f'{{"schema":{self.key_schema_text[topic]},"payload":{{"{pk}":"{row[pk]}"}}}}'.encode()
        return key, value

    def events(self, n: int):
        """(topic, key, value) for n events, topics interleaved by TOPIC_SHARE."""
        counts = {TOPICS[0]: round(n * TOPIC_SHARE[TOPICS[0]])}
        counts[TOPICS[1]] = n - counts[TOPICS[0]]
        left = dict(counts)
        for _ in range(n):
            topic = TOPICS[0] if self.rng.random() < left[TOPICS[0]] / (left[TOPICS[0]] + left[TOPICS[1]]) else TOPICS[1]
            left[topic] -= 1
            key, value = self.event(topic)
            yield topic, key, value


def produce(bootstrap: str, n: int, partitions: int, compression: str) -> dict:
    from confluent_kafka import Producer

    from pipelines.stack.kafka import Kafka

    Kafka.ensure_topics(int(bootstrap.rsplit(":", 1)[1]), list(TOPICS)) if partitions == 1 else _create_topics(
        bootstrap, partitions)
    producer = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000, "compression.type": compression,
        "queue.buffering.max.kbytes": 1_048_576, "queue.buffering.max.messages": 1_000_000, "acks": "1",
    })
    errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    counts = {t: 0 for t in TOPICS}
    size = 0
    started = time.monotonic()
    for topic, key, value in EventGenerator().events(n):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.2)
        producer.poll(0)
        counts[topic] += 1
        size += len(value) + len(key)
    left = producer.flush(300)
    if left or errors:
        raise RuntimeError(f"produce failed: {left} undelivered, errors: {errors[:3]}")
    return {"counts": counts, "bytes": size, "seconds": time.monotonic() - started}


def _create_topics(bootstrap: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    client = AdminClient({"bootstrap.servers": bootstrap})
    for future in client.create_topics([NewTopic(t, partitions, 1) for t in TOPICS]).values():
        future.result()


# ---------------------------------------------------------------------------------------------------
# measurements (child processes)
# ---------------------------------------------------------------------------------------------------
def child_baseline(bootstrap: str) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    started = time.perf_counter()
    events = 0
    size = 0
    for topic in TOPICS:
        # the fetch settings of pipelines.cdc.ingest's consumer: the difference is what happens per message.
        # Without its fetch.queue.backoff.ms the bare consumer too stalls for 1 s whenever librdkafka's queue
        # fills, and read anywhere between 40k and 130k events/s on the same data.
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024, "fetch.queue.backoff.ms": 10,
        })
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            targets = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            pending = {p for p, high in targets.items() if high > 0}
            remaining = sum(targets.values())
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
            while pending:
                # never ask for more than is left: consume() would wait out its timeout for the rest
                for msg in consumer.consume(num_messages=max(1, min(10_000, remaining)), timeout=1.0):
                    if msg.error():
                        raise RuntimeError(str(msg.error()))
                    size += len(msg.value())
                    events += 1
                    remaining -= 1
                    if msg.offset() + 1 >= targets[msg.partition()]:
                        pending.discard(msg.partition())
        finally:
            consumer.close()
    return {"events": events, "bytes": size, "seconds": time.perf_counter() - started}


def child_ours(module: str, profile: str | None) -> dict:
    import importlib

    from pipelines.settings import load_settings

    ingest = importlib.import_module(module)
    settings = load_settings()
    results = []

    def run():
        for topic in TOPICS:
            results.append(ingest.ingest_topic(settings, topic))

    started = time.perf_counter()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(run)
        profiler.dump_stats(profile)
    else:
        run()
    seconds = time.perf_counter() - started
    return {
        "events": sum(r.records_read for r in results),
        "bronze_rows": sum(r.bronze_rows for r in results),
        "quarantined": sum(r.quarantined for r in results),
        "commits": sum(r.commits for r in results),
        "tables": [r.table_path for r in results],
        "seconds": seconds,
    }


def run_child(kind: str, bootstrap: str, data_dir: Path, module: str, profile: str | None) -> dict:
    env = dict(os.environ)
    env.update({
        "LAKEHOUSE_DATA_DIR": str(data_dir),
        "LAKEHOUSE_KAFKA_BOOTSTRAP": bootstrap,
        "LAKEHOUSE_LAKE_ROOT": str(data_dir / "lake"),
        "LAKEHOUSE_TOPIC_PREFIX": PREFIX,
    })
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--bootstrap", bootstrap,
           "--ingest-module", module]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------
def start_kafka(data_dir: Path):
    """Only the Kafka component of pipelines.stack (the bench needs no Postgres, Connect or S3)."""
    from pipelines.settings import load_settings
    from pipelines.stack import Stack

    stack = Stack(load_settings({"LAKEHOUSE_DATA_DIR": str(data_dir)}))
    state = stack.up(only=["kafka"])
    return stack, f"127.0.0.1:{state['kafka']['port']}"


def bronze_row_count(tables: list[str]) -> int:
    from pipelines.lake import delta_table_stats

    return sum(delta_table_stats(path)[0] for path in tables)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stages", default="baseline,ours,baseline",
                        help="comma-separated order of measurements (baseline|ours); best of each is used")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic (the connector makes 1)")
    parser.add_argument("--compression", default="none", help="producer compression.type (Connect's default: none)")
    parser.add_argument("--ingest-module", default="pipelines.cdc.ingest")
    parser.add_argument("--profile", help="cProfile output file for the `ours` runs")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON ('-' = do not write)")
    parser.add_argument("--child", choices=("baseline", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "baseline":
        out = child_baseline(args.bootstrap)
    elif args.child == "ours":
        out = child_ours(args.ingest_module, args.profile)
    if args.child:
        out["peak_rss_bytes"] = peak_rss_bytes()
        print(json.dumps(out))
        return 0

    stages = stages_from(parser, args.stages, {"baseline", "ours"})
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-cdc-"))
    stack = None
    try:
        t0 = time.monotonic()
        stack, bootstrap = start_kafka(tmp / "kafka")
        print(f"kafka up at {bootstrap} in {time.monotonic() - t0:.1f} s", flush=True)
        produced = produce(bootstrap, args.events, args.partitions, args.compression)
        print(f"produced {args.events:,} events ({produced['bytes'] / 1e9:.2f} GB, "
              f"{produced['counts']}) in {produced['seconds']:.1f} s", flush=True)

        runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
        for i, stage in enumerate(stages):
            lake = tmp / f"run{i}"
            out = run_child(stage, bootstrap, lake, args.ingest_module, args.profile)
            if out["events"] != args.events:
                raise RuntimeError(f"{stage} read {out['events']} events, expected {args.events}")
            if stage == "ours":
                rows = bronze_row_count(out["tables"])
                if rows != args.events or out["quarantined"]:
                    raise RuntimeError(f"bronze has {rows} rows ({out['quarantined']} quarantined), expected {args.events}")
                out["bronze_rows_in_delta_log"] = rows
                import shutil

                shutil.rmtree(lake, ignore_errors=True)  # several GB of parquet
            out["events_per_s"] = out["events"] / out["seconds"]
            runs[stage].append(out)
            print(f"  {stage:8s} {out['events_per_s']:>10,.0f} events/s  {out['seconds']:7.1f} s  "
                  f"peak RSS {out['peak_rss_bytes'] / 2**20:,.0f} MiB", flush=True)

        result = {"events": args.events, "machine": machine(), "timestamp": utc_timestamp(), **rate_summary(runs)}
        if runs["ours"]:
            result["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs["ours"])
        result["details"] = {
            "stages": stages,
            "baseline_runs_events_per_s": [round(r["events_per_s"]) for r in runs["baseline"]],
            "ours_runs_events_per_s": [round(r["events_per_s"]) for r in runs["ours"]],
            "baseline_peak_rss_bytes": max((r["peak_rss_bytes"] for r in runs["baseline"]), default=None),
            "median_baseline_events_per_s": round(statistics.median(r["events_per_s"] for r in runs["baseline"]))
            if runs["baseline"] else None,
            "topics": produced["counts"],
            "partitions_per_topic": args.partitions,
            "value_bytes_avg": round(produced["bytes"] / args.events),
            "compression": args.compression,
            "ingest_module": args.ingest_module,
            "target": "ratio >= 0.5 and peak_rss_bytes < 2 GiB",
        }
        print()
        if "baseline_events_per_s" in result:
            print(f"baseline (bare consumer): {result['baseline_events_per_s']:>10,} events/s")
        if "ours_events_per_s" in result:
            print(f"ours (ingest_topic):      {result['ours_events_per_s']:>10,} events/s   "
                  f"peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB")
        if "ratio" in result:
            ok = result["ratio"] >= 0.5 and result["peak_rss_bytes"] < 2**31
            print(f"ratio ours/baseline:      {result['ratio']:.3f}   ({'PASS' if ok else 'FAIL'}: target >= 0.5, RSS < 2 GiB)")
        write_result(args.output, result)
        return 0
    finally:
        if stack is not None:
            stack.down(purge=True)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
