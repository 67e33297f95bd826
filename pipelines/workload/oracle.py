"""Ground truth computed with plain SQL on the OLTP tables, for tests that check the lake's gold layer.

Nothing here reads the lake or reuses pipeline code: the point is an independent answer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

import psycopg

from pipelines.workload.model import ROW_TYPES, TABLES

# Revenue counts orders once they are paid for; PENDING (unpaid) and CANCELLED orders are excluded.
REVENUE_STATUSES = ("CONFIRMED", "SHIPPED", "DELIVERED")


def table_contents_digest(conn: psycopg.Connection) -> dict[str, str]:
    """SHA-256 per table of its rows' text form in primary-key order: equal digests, equal contents."""
    digests = {}
    for table in TABLES:
        key = ROW_TYPES[table].key_column
        digest = hashlib.sha256()
        with conn.cursor() as cur:
            cur.execute(f'select t::text from public."{table}" t order by "{key}"')
            for (text,) in cur:
                digest.update(text.encode())
                digest.update(b"\n")
        digests[table] = digest.hexdigest()
    return digests


# -- gold tables ------------------------------------------------------------------------------------------
# Each query yields one gold table's rows (the current rows, for SCD2 tables) in the column order of
# GOLD_COLUMNS, sorted by the first column(s). UUIDs come back as uuid.UUID, jsonb as its text form.

_REVENUE = "(o.status::text = any(%(revenue)s) and o.deleted_at is null)"

_ORACLE_SQL = {
    "fct_orders": f"""
        select o.order_id, o.customer_id, o.status::text, o.order_ts, (o.order_ts at time zone 'UTC')::date,
               o.subtotal, o.discount_amount, o.tax_amount, o.shipping_amount, o.total_amount, o.currency::text,
               {_REVENUE}, o.deleted_at, o.version
        from public.orders o order by 1""",
    "fct_order_items": f"""
        select i.order_item_id, i.order_id, i.product_id, o.customer_id, o.order_ts,
               (o.order_ts at time zone 'UTC')::date, o.status::text, i.quantity, i.unit_price, i.discount_amount,
               i.line_total, coalesce({_REVENUE}, false)
        from public.order_items i left join public.orders o on o.order_id = i.order_id order by 1""",
    "dim_customers": """
        select customer_id, email, first_name, last_name, phone, country::text, city, marketing_opt_in,
               registered_at, deleted_at, deleted_at is not null, version
        from public.customers order by 1""",
    "dim_products": """
        select product_id, sku, name, category, brand, price, cost, price - cost, is_active, attributes::text,
               created_at, updated_at, deleted_at
        from public.products order by 1""",
    "dim_date": """
        select d::date, extract(year from d)::int, extract(quarter from d)::int, extract(month from d)::int,
               to_char(d, 'FMMonth'), extract(day from d)::int, extract(isodow from d)::int, to_char(d, 'FMDay'),
               extract(week from d)::int, extract(isodow from d) >= 6, date_trunc('month', d)::date
        from generate_series(%(date_start)s::date, %(date_end)s::date, interval '1 day') as d order by 1""",
    "agg_daily_sales": f"""
        select (o.order_ts at time zone 'UTC')::date, count(*), sum(o.total_amount),
               round(sum(o.total_amount) / count(*), 2), count(distinct o.customer_id)
        from public.orders o where {_REVENUE} group by 1 order by 1""",
    "agg_hourly_revenue": f"""
        select date_trunc('hour', o.order_ts at time zone 'UTC') at time zone 'UTC' as hour,
               (date_trunc('hour', o.order_ts at time zone 'UTC'))::date, count(*), sum(o.total_amount),
               round(sum(o.total_amount) / count(*), 2), count(distinct o.customer_id)
        from public.orders o where {_REVENUE} group by 1, 2 order by 1""",
    # "last 30 days": (as_of - 30 days, as_of], as_of = the latest order_ts of any order in the source
    "customer_features": f"""
        with reference as (select max(order_ts) as as_of from public.orders),
        revenue as (
            select o.customer_id, o.order_ts, o.total_amount, r.as_of
            from public.orders o cross join reference r where {_REVENUE} and o.order_ts <= r.as_of
        ),
        per_customer as (
            select customer_id,
                   count(*) filter (where order_ts > as_of - interval '30 days') as recent_orders,
                   coalesce(sum(total_amount) filter (where order_ts > as_of - interval '30 days'), 0) as recent_spent,
                   count(*) as orders, sum(total_amount) as value, min(order_ts) as first_at, max(order_ts) as last_at
            from revenue group by 1
        )
        select c.customer_id, coalesce(p.recent_orders, 0), coalesce(p.recent_spent, 0),
               round(p.value / p.orders, 2), coalesce(p.orders, 0), coalesce(p.value, 0),
               case when p.orders is null then 'no_orders' when p.value < 100 then 'low_value'
                    when p.value < 500 then 'mid_value' else 'high_value' end,
               p.first_at, p.last_at, r.as_of
        from public.customers c cross join reference r left join per_customer p on p.customer_id = c.customer_id
        order by 1""",
}

GOLD_COLUMNS = {
    "fct_orders": ("order_id", "customer_id", "status", "order_ts", "order_date", "subtotal", "discount_amount",
                   "tax_amount", "shipping_amount", "total_amount", "currency", "is_revenue", "deleted_at",
                   "row_version"),
    "fct_order_items": ("order_item_id", "order_id", "product_id", "customer_id", "order_ts", "order_date",
                        "order_status", "quantity", "unit_price", "discount_amount", "line_total", "is_revenue"),
    "dim_customers": ("customer_id", "email", "first_name", "last_name", "phone", "country", "city",
                      "marketing_opt_in", "registered_at", "deleted_at", "is_deleted", "row_version"),
    "dim_products": ("product_id", "sku", "name", "category", "brand", "price", "cost", "unit_margin", "is_active",
                     "attributes", "created_at", "updated_at", "deleted_at"),
    "dim_date": ("date_day", "year", "quarter", "month", "month_name", "day_of_month", "day_of_week", "day_name",
                 "iso_week", "is_weekend", "month_start"),
    "agg_daily_sales": ("order_date", "order_count", "total_revenue", "avg_order_value", "unique_customers"),
    "agg_hourly_revenue": ("order_hour", "order_date", "order_count", "total_revenue", "avg_order_value",
                           "unique_customers"),
    "customer_features": ("customer_id", "order_count_last_30_days", "total_spent_last_30_days", "avg_order_value",
                          "lifetime_order_count", "lifetime_value", "lifetime_segment", "first_order_at",
                          "last_order_at", "features_updated_at"),
    "agg_daily_funnel": ("funnel_date", "viewing_sessions", "carting_sessions", "ordering_sessions", "product_views",
                         "cart_adds", "orders", "view_to_cart_rate", "cart_to_order_rate", "view_to_order_rate"),
}


def gold_table(conn: psycopg.Connection, table: str, *, calendar: tuple[date, date] | None = None) -> list[tuple]:
    """The rows gold.<table> must hold (current rows for SCD2 tables), computed on the OLTP tables;
    `calendar` is dim_date's (first, last) day."""
    date_start, date_end = calendar or (None, None)
    params = {"revenue": list(REVENUE_STATUSES), "date_start": date_start, "date_end": date_end}
    return [tuple(row) for row in conn.execute(_ORACLE_SQL[table], params).fetchall()]


def daily_sales(conn: psycopg.Connection) -> list[tuple[date, int, Decimal, Decimal, int]]:
    """Per UTC day of order_ts: order count, revenue, average order value, distinct customers."""
    return gold_table(conn, "agg_daily_sales")


def version_counts(conn: psycopg.Connection, table: str) -> dict[UUID, int]:
    """Key → the row's `version`: every update increments it, so it is the number of SCD2 versions."""
    key = ROW_TYPES[table].key_column
    return dict(conn.execute(f'select "{key}", version from public."{table}"').fetchall())


# -- events funnel ------------------------------------------------------------------------------------------


def read_event_lines(settings) -> list[dict]:
    """Every JSON line of every event object the workload wrote under `<bucket>/<events_prefix>` in S3."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name=settings.s3_region,
    )
    prefix = settings.events_prefix.strip("/")
    events = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])["Body"].read()
            if obj["Key"].endswith(".gz"):
                body = gzip.decompress(body)
            events.extend(json.loads(line) for line in body.decode().splitlines() if line.strip())
    return events


def _share(count: int, total: int) -> Decimal | None:
    return (Decimal(count) / Decimal(total)).quantize(Decimal("0.0001"), ROUND_HALF_UP) if total else None


def daily_funnel(events: list[dict]) -> list[tuple]:
    """Sessions per UTC day of their first product view, and how many of them added to cart and ordered."""
    unique = {e["eventId"].lower(): e for e in events}
    sessions: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for e in unique.values():
        if e.get("sessionId") and e["eventType"] in ("product.viewed", "cart.item_added", "order.created"):
            sessions[e["sessionId"]][e["eventType"]].append(datetime.fromisoformat(e["timestamp"]).astimezone(UTC))
    days: dict[date, list[int]] = defaultdict(lambda: [0] * 6)
    for by_type in sessions.values():
        if not by_type["product.viewed"]:
            continue
        day = days[min(by_type["product.viewed"]).date()]
        views, adds, orders = (len(by_type[t]) for t in ("product.viewed", "cart.item_added", "order.created"))
        for i, value in enumerate((1, adds > 0, orders > 0, views, adds, orders)):
            day[i] += int(value)
    return [
        (day, viewing, carting, ordering, views, adds, orders,
         _share(carting, viewing), _share(ordering, carting), _share(ordering, viewing))
        for day, (viewing, carting, ordering, views, adds, orders) in sorted(days.items())
    ]
