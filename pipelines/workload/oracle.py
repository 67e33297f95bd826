"""Ground truth computed with plain SQL on the OLTP tables, for tests that check the lake's gold layer.

Nothing here reads the lake or reuses pipeline code: the point is an independent answer.
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

import psycopg

from pipelines.workload.model import ROW_TYPES, TABLES

# Revenue counts orders once they are paid for; PENDING (unpaid) and CANCELLED orders are excluded.
REVENUE_STATUSES = ("CONFIRMED", "SHIPPED", "DELIVERED")

_DAILY_SALES = """
select (order_ts at time zone 'UTC')::date       as day,
       count(*)                                  as order_count,
       sum(total_amount)                         as total_revenue,
       round(sum(total_amount) / count(*), 2)    as avg_order_value,
       count(distinct customer_id)               as unique_customers
from public.orders
where deleted_at is null
  and status::text = any(%s)
group by 1
order by 1
"""


def daily_sales(conn: psycopg.Connection) -> list[tuple[date, int, Decimal, Decimal, int]]:
    """Per UTC day of order_ts: order count, revenue, average order value, distinct customers."""
    return [tuple(row) for row in conn.execute(_DAILY_SALES, (list(REVENUE_STATUSES),)).fetchall()]


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
