"""What the workload produces, as plain data: table rows, row operations, business events, transactions.

The simulation (pure) builds these; the writer turns them into SQL and JSON lines. Keeping them as data is
what lets the unit tests check the workload without Postgres and the integration tests compare Postgres
with an independent replay of the same operations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

AUDIT_COLUMNS = ("created_at", "created_by", "updated_at", "updated_by", "version", "deleted_at", "deleted_by")
TABLES = ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
EVENT_TYPES = (
    "order.created",
    "order.confirmed",
    "order.cancelled",
    "payment.processed",
    "payment.failed",
    "shipment.dispatched",
    "shipment.delivered",
    "user.registered",
    "user.updated",
    "product.viewed",
    "cart.item_added",
    "cart.item_removed",
)


class WorkloadError(Exception):
    """A problem the user can fix (database unreachable, schema missing, seed already used); one line."""


# -- rows ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Row:
    """One row of a table; subclasses list the business columns, this class the audit columns."""

    table: ClassVar[str]
    key_column: ClassVar[str]

    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    version: int = 1
    deleted_at: datetime | None = None
    deleted_by: str | None = None

    @property
    def key(self) -> UUID:
        return getattr(self, self.key_column)

    def columns(self) -> dict[str, object]:
        """Column name -> value, business columns first, in the table's column order."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        business = {name: value for name, value in values.items() if name not in AUDIT_COLUMNS}
        return business | {name: values[name] for name in AUDIT_COLUMNS}


@dataclass(frozen=True, kw_only=True)
class Customer(Row):
    table: ClassVar[str] = "customers"
    key_column: ClassVar[str] = "customer_id"

    customer_id: UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    country: str
    city: str | None
    marketing_opt_in: bool
    registered_at: datetime


@dataclass(frozen=True, kw_only=True)
class Product(Row):
    table: ClassVar[str] = "products"
    key_column: ClassVar[str] = "product_id"

    product_id: UUID
    sku: str
    name: str
    category: str
    brand: str
    price: Decimal
    cost: Decimal
    is_active: bool
    attributes: dict | None


@dataclass(frozen=True, kw_only=True)
class InventoryItem(Row):
    table: ClassVar[str] = "inventory"
    key_column: ClassVar[str] = "inventory_id"

    inventory_id: UUID
    product_id: UUID
    warehouse_code: str
    quantity_on_hand: int
    quantity_reserved: int
    reorder_point: int


@dataclass(frozen=True, kw_only=True)
class Order(Row):
    table: ClassVar[str] = "orders"
    key_column: ClassVar[str] = "order_id"

    order_id: UUID
    customer_id: UUID
    status: str
    order_ts: datetime
    subtotal: Decimal
    discount_amount: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    total_amount: Decimal
    currency: str
    shipping_address: dict | None


@dataclass(frozen=True, kw_only=True)
class OrderItem(Row):
    table: ClassVar[str] = "order_items"
    key_column: ClassVar[str] = "order_item_id"

    order_item_id: UUID
    order_id: UUID
    product_id: UUID
    quantity: int
    unit_price: Decimal
    discount_amount: Decimal
    line_total: Decimal


@dataclass(frozen=True, kw_only=True)
class Payment(Row):
    table: ClassVar[str] = "payments"
    key_column: ClassVar[str] = "payment_id"

    payment_id: UUID
    order_id: UUID
    method: str
    status: str
    amount: Decimal
    currency: str
    provider_ref: str | None
    processed_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Shipment(Row):
    table: ClassVar[str] = "shipments"
    key_column: ClassVar[str] = "shipment_id"

    shipment_id: UUID
    order_id: UUID
    carrier: str
    tracking_number: str | None
    status: str
    shipped_at: datetime | None
    delivered_at: datetime | None


ROW_TYPES: dict[str, type[Row]] = {
    cls.table: cls for cls in (Customer, Product, InventoryItem, Order, OrderItem, Payment, Shipment)
}


# -- operations ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    row: Row

    @property
    def table(self) -> str:
        return self.row.table


@dataclass(frozen=True)
class Update:
    """Changed columns of one row; `expected_version` guards against rows changed outside the workload."""

    table: str
    key_column: str
    key: UUID
    expected_version: int
    changes: tuple[tuple[str, object], ...]
    after: Row

    @classmethod
    def between(cls, before: Row, after: Row) -> Update:
        old, new = before.columns(), after.columns()
        changes = tuple((name, value) for name, value in new.items() if old[name] != value)
        return cls(before.table, before.key_column, before.key, before.version, changes, after)


@dataclass(frozen=True)
class Delete:
    row: Row

    @property
    def table(self) -> str:
        return self.row.table


Operation = Insert | Update | Delete


# -- events ----------------------------------------------------------------------------------------------


def event_time(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and 'Z', the platform event schema's timestamp form."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def json_ready(value: object) -> object:
    """Row values as JSON: uuids and money as strings (money stays exact), timestamps in event form."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return event_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


@dataclass(frozen=True)
class BusinessEvent:
    event_id: UUID
    event_type: str
    source: str
    timestamp: datetime
    payload: dict
    metadata: dict
    correlation_id: UUID
    user_id: UUID | None
    session_id: UUID | None
    environment: str = "local"
    region: str = "us-east-1"

    def to_json(self) -> dict:
        return {
            "eventId": str(self.event_id),
            "eventType": self.event_type,
            "eventSource": self.source,
            "timestamp": event_time(self.timestamp),
            "version": "1.0",
            "data": {"payload": json_ready(self.payload), "metadata": json_ready(self.metadata)},
            "correlationId": str(self.correlation_id),
            "userId": None if self.user_id is None else str(self.user_id),
            "sessionId": None if self.session_id is None else str(self.session_id),
            "environment": self.environment,
            "region": self.region,
        }


# -- transactions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    """One business step: its row operations commit together in one SQL transaction.

    `operations` is empty for storefront activity (product views, cart changes) that only emits events.
    """

    at: datetime
    service: str
    step: str
    operations: tuple[Operation, ...]
    events: tuple[BusinessEvent, ...]


# -- summary ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    soft_deletes: int = 0  # the updates among `updates` that set deleted_at

    @property
    def net_rows(self) -> int:
        return self.inserts - self.deletes


@dataclass(frozen=True)
class WorkloadSummary:
    seed: int
    start: datetime
    end: datetime
    transactions: int
    tables: dict[str, TableCounts]
    events: dict[str, int]
    event_objects: int = 0
    elapsed_seconds: float = field(default=0.0, compare=False)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    def format(self) -> str:
        lines = [
            f"workload seed {self.seed}: {event_time(self.start)} .. {event_time(self.end)}, "
            f"{self.transactions} transactions in {self.elapsed_seconds:.1f} s",
            f"  {'table':12} {'inserts':>8} {'updates':>8} {'deletes':>8} {'soft-deleted':>12}",
        ]
        for table in TABLES:
            c = self.tables.get(table, TableCounts())
            lines.append(f"  {table:12} {c.inserts:8} {c.updates:8} {c.deletes:8} {c.soft_deletes:12}")
        lines.append(f"  events: {self.total_events} in {self.event_objects} object(s)")
        for event_type in EVENT_TYPES:
            if self.events.get(event_type):
                lines.append(f"    {event_type:20} {self.events[event_type]:8}")
        return "\n".join(lines)


class Tally:
    """Counts operations and events as transactions go by; `summary()` freezes them."""

    def __init__(self) -> None:
        self.transactions = 0
        self.ops: dict[str, Counter] = {table: Counter() for table in TABLES}
        self.events: Counter = Counter()

    def add(self, tx: Transaction) -> None:
        if tx.operations:
            self.transactions += 1
        for op in tx.operations:
            kind = "inserts" if isinstance(op, Insert) else "updates" if isinstance(op, Update) else "deletes"
            self.ops[op.table][kind] += 1
            if isinstance(op, Update) and any(name == "deleted_at" for name, _ in op.changes):
                self.ops[op.table]["soft_deletes"] += 1
        for event in tx.events:
            self.events[event.event_type] += 1

    def summary(self, seed: int, start: datetime, end: datetime, **extra: object) -> WorkloadSummary:
        return WorkloadSummary(
            seed=seed,
            start=start,
            end=end,
            transactions=self.transactions,
            tables={table: TableCounts(**counts) for table, counts in self.ops.items()},
            events={t: self.events[t] for t in EVENT_TYPES if self.events[t]},
            **extra,
        )
