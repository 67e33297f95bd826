"""A deterministic discrete-event simulation of a web shop; pure: it yields transactions as data.

Everything comes from `random.Random` instances seeded from the workload seed and the simulated clock,
never from global random state or the wall clock, so one seed always yields the same transactions. Three
independent generators keep concerns apart: `decide` draws every business decision, `keys` draws primary
keys (so keys are a function of the seed and never reused), `ids` draws event, session and correlation ids.

Life of an order (each arrow is one SQL transaction):
  storefront session (views, cart adds/removes; events only)
  -> order PENDING with its items
  -> payment AUTHORIZED + order CONFIRMED + inventory reserved      (or payment FAILED, retried or cancelled)
  -> payment CAPTURED + order SHIPPED + shipment DISPATCHED + stock taken
  -> shipment IN_TRANSIT -> shipment DELIVERED + order DELIVERED
Side paths: cancel while PENDING; cancel while CONFIRMED (payment REFUNDED, reservation released);
abandoned PENDING orders are hard-deleted with their items by an hourly cleanup once older than a day.
Alongside: customers register, change email/phone/address/opt-in and are sometimes soft-deleted; products
are created, re-priced and deactivated (their unreserved inventory rows then hard-deleted); stock is
replenished when it falls below the reorder point.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar
from uuid import UUID

from pipelines.workload.model import (
    BusinessEvent,
    Customer,
    Delete,
    InventoryItem,
    Insert,
    Operation,
    Order,
    OrderItem,
    Payment,
    Product,
    Row,
    Shipment,
    Transaction,
    Update,
    WorkloadError,
)

DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT_RATE = 4.0
CURRENCY = "USD"

CUSTOMER_SERVICE = "customer-service"
CATALOG_SERVICE = "catalog-service"
INVENTORY_SERVICE = "inventory-service"
ORDER_SERVICE = "order-service"
PAYMENT_SERVICE = "payment-service"
SHIPPING_SERVICE = "shipping-service"
STOREFRONT = "storefront"

_CENT = Decimal("0.01")
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 24 * _MS_PER_HOUR

# Share of storefront sessions that end in an order; sessions arrive at rate / this, so orders average `rate`.
CONVERSION = 0.3
# Relative traffic per UTC hour (mean 1.0): quiet nights, lunch and evening peaks.
_HOURLY_TRAFFIC = (
    0.35, 0.25, 0.2, 0.2, 0.25, 0.4, 0.6, 0.85, 1.0, 1.1, 1.15, 1.25,
    1.35, 1.3, 1.2, 1.15, 1.2, 1.35, 1.55, 1.7, 1.65, 1.4, 1.0, 0.6,
)  # fmt: skip
_TRAFFIC_MEAN = sum(_HOURLY_TRAFFIC) / 24
_TRAFFIC_PEAK = max(_HOURLY_TRAFFIC) / _TRAFFIC_MEAN

_FIRST_NAMES = (
    "Ava", "Liam", "Emma", "Noah", "Olivia", "Lucas", "Mia", "Leon", "Sofia", "Elias", "Chloe", "Mateo",
    "Hannah", "Finn", "Zoe", "Jonas", "Amara", "Theo", "Ines", "Ravi", "Yuki", "Omar", "Freya", "Diego",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Müller", "Dubois", "Rossi", "Jansen", "Kowalski", "Nguyen", "Patel",
    "Brown", "Schmidt", "Martin", "Silva", "Andersson", "Okafor", "Tanaka", "Murphy", "Lopez", "Novak",
)  # fmt: skip
# country: (weight, phone prefix, sales tax rate, cities)
_COUNTRIES = {
    "US": (50, "+1", Decimal("0.08"), ("New York", "Chicago", "Austin", "Seattle", "Denver", "Boston")),
    "GB": (12, "+44", Decimal("0.20"), ("London", "Manchester", "Leeds")),
    "DE": (12, "+49", Decimal("0.19"), ("Berlin", "Munich", "Hamburg")),
    "FR": (8, "+33", Decimal("0.20"), ("Paris", "Lyon", "Nantes")),
    "CA": (10, "+1", Decimal("0.13"), ("Toronto", "Vancouver", "Montreal")),
    "NL": (8, "+31", Decimal("0.21"), ("Amsterdam", "Utrecht", "Rotterdam")),
}
_STREETS = ("Main St", "Oak Ave", "Park Rd", "High St", "Station Rd", "Lake Dr", "Elm St", "Market Sq")
# category: (brands, items, price range)
_CATALOG = {
    "Electronics": (("Voltix", "Nimbus", "Auralink"), ("Wireless Earbuds", "Bluetooth Speaker", "USB-C Charger",
                    "Smart Watch", "Portable SSD", "Webcam"), (19, 299)),
    "Home & Kitchen": (("Hearthly", "Casa Verde"), ("Chef Knife", "French Press", "Cast Iron Skillet",
                       "Throw Blanket", "Desk Lamp"), (12, 150)),
    "Apparel": (("Northwind", "Loomwell"), ("Rain Jacket", "Merino Sweater", "Running Shoes", "Denim Jeans",
                "Wool Beanie"), (15, 180)),
    "Sports": (("Peakform", "Stride"), ("Yoga Mat", "Water Bottle", "Resistance Bands", "Camping Lantern",
               "Trail Backpack"), (8, 140)),
    "Books": (("Paperleaf",), ("Cookbook", "Mystery Novel", "Travel Guide", "Sci-Fi Anthology"), (9, 40)),
    "Beauty": (("Glowlab", "Verdant"), ("Face Serum", "Sunscreen SPF50", "Hand Cream", "Shampoo Bar"), (6, 60)),
}  # fmt: skip
_COLORS = ("black", "white", "navy", "olive", "red", "sand", "grey", "teal")
_WAREHOUSES = ("WH-EAST", "WH-WEST", "WH-CENTRAL", "WH-EU")
_CARRIERS = ("UPS", "FedEx", "DHL", "USPS")
_PAYMENT_METHODS = (("card", 65), ("paypal", 20), ("bank_transfer", 8), ("gift_card", 7))
_CHANNELS = (("web", 60), ("ios", 25), ("android", 15))


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int
    customers: int
    days: int
    rate: float = DEFAULT_RATE
    start: datetime = DEFAULT_START
    environment: str = "local"
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise WorkloadError(f"--customers must be at least 1, got {self.customers}")
        if self.days < 1:
            raise WorkloadError(f"--days must be at least 1, got {self.days}")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise WorkloadError(f"--rate must be a positive number of orders per hour, got {self.rate}")
        if self.start.tzinfo is None:
            raise WorkloadError(f"start {self.start} has no time zone; the simulated clock runs in UTC")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def run_id(self) -> str:
        """Names this run's event objects, so runs with other seeds or parameters never overwrite them."""
        spec = f"{self.seed}|{self.customers}|{self.days}|{self.rate!r}|{self.start.isoformat()}"
        return f"seed{self.seed}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


R = TypeVar("R", bound=Row)


def money(value: Decimal | float | int) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


@dataclass
class _OrderState:
    order: Order
    items: list[OrderItem]
    correlation_id: UUID
    payments: list[Payment] = field(default_factory=list)
    shipment: Shipment | None = None
    reservations: list[tuple[UUID, int]] = field(default_factory=list)
    failed_attempts: int = 0


class _TxBuilder:
    """Collects the operations and events of one business step."""

    def __init__(self, shop: _Shop, service: str, step: str):
        self.shop = shop
        self.service = service
        self.step = step
        self.operations: list[Operation] = []
        self.events: list[BusinessEvent] = []

    def insert(self, row: R) -> R:
        self.operations.append(Insert(row))
        self.shop.rows[row.table][row.key] = row
        return row

    def update(self, before: R, service: str, **changes: object) -> R:
        after = replace(before, **changes, updated_at=self.shop.now, updated_by=service, version=before.version + 1)
        self.operations.append(Update.between(before, after))
        self.shop.rows[before.table][before.key] = after
        return after

    def delete(self, row: Row) -> None:
        self.operations.append(Delete(row))
        del self.shop.rows[row.table][row.key]

    def event(
        self,
        event_type: str,
        source: str,
        payload: dict,
        *,
        correlation_id: UUID | None = None,
        user_id: UUID | None = None,
        session_id: UUID | None = None,
        at: datetime | None = None,
        **metadata: object,
    ) -> None:
        shop = self.shop
        event_id = _uuid(shop.ids)
        self.events.append(
            BusinessEvent(
                event_id=event_id,
                event_type=event_type,
                source=source,
                timestamp=at or shop.now,
                payload=payload,
                metadata={"runId": shop.config.run_id, "step": self.step, **metadata},
                correlation_id=correlation_id or _uuid(shop.ids),
                user_id=user_id,
                session_id=session_id,
                environment=shop.config.environment,
                region=shop.config.region,
            )
        )

    def build(self) -> Transaction:
        return Transaction(self.shop.now, self.service, self.step, tuple(self.operations), tuple(self.events))


class _Shop:
    def __init__(self, config: WorkloadConfig):
        self.config = config
        base = f"lakehouse-workload/{config.seed}"
        self.decide = random.Random(f"{base}/decisions")
        self.keys = random.Random(f"{base}/keys")
        self.ids = random.Random(f"{base}/ids")
        self.end_ms = config.days * _MS_PER_DAY
        self.now_ms = 0
        self._queue: list[tuple[int, int, Callable[..., Iterator[Transaction]], tuple]] = []
        self._sequence = 0
        self.rows: dict[str, dict[UUID, Row]] = {
            t: {} for t in ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
        }
        self.active_customers: list[UUID] = []  # registration order; soft-deleted ones removed
        self.street: dict[UUID, str] = {}  # customers' street line, not a column; goes into shipping addresses
        self.active_products: list[UUID] = []
        self.inventory_of: dict[UUID, list[UUID]] = {}
        self.restock_pending: set[UUID] = set()
        self.orders: dict[UUID, _OrderState] = {}
        self.pending_since: dict[UUID, int] = {}  # PENDING orders by creation ms, for the abandoned-order cleanup

    # -- clock and scheduling ------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.config.start + timedelta(milliseconds=self.now_ms)

    def at(self, ms: int) -> datetime:
        return self.config.start + timedelta(milliseconds=ms)

    def schedule(self, at_ms: int, action: Callable[..., Iterator[Transaction]], *args: object) -> None:
        if at_ms < self.end_ms:
            self._sequence += 1
            heapq.heappush(self._queue, (at_ms, self._sequence, action, args))

    def after(self, low_s: float, high_s: float) -> int:
        """A time `low_s`..`high_s` seconds from now, in ms (at least 1 ms later, so steps stay ordered)."""
        return self.now_ms + max(1, int(self.decide.uniform(low_s, high_s) * 1000))

    def tx(self, service: str, step: str) -> _TxBuilder:
        return _TxBuilder(self, service, step)

    def run(self) -> Iterator[Transaction]:
        self._bootstrap()
        while self._queue:
            self.now_ms, _, action, args = heapq.heappop(self._queue)
            yield from action(*args)

    def _bootstrap(self) -> None:
        cfg, d = self.config, self.decide
        for _ in range(30 + cfg.customers // 10):
            self.schedule(int(d.uniform(0, 600_000)), self.create_product)
        # Half the customers exist when the shop opens (registered in its first hour), the rest trickle in.
        early = cfg.customers // 2
        for i in range(cfg.customers):
            at_ms = int(d.uniform(0, _MS_PER_HOUR)) if i < early else int(d.uniform(_MS_PER_HOUR, self.end_ms))
            self.schedule(at_ms, self.register_customer)
        self.schedule(int(d.expovariate(1.0) * _MS_PER_DAY), self.launch_product)
        self.schedule(self._next_session_ms(), self.session)
        self.schedule(5 * 60_000 + _MS_PER_HOUR, self.cleanup_abandoned_orders)

    def _next_session_ms(self) -> int:
        """Next session of a Poisson process whose rate follows the hour of day (thinning)."""
        d = self.decide
        peak_per_hour = self.config.rate / CONVERSION * _TRAFFIC_PEAK
        t = self.now_ms
        while True:
            t += max(1, int(d.expovariate(peak_per_hour) * _MS_PER_HOUR))
            hour = self.at(t).hour
            if d.random() * _TRAFFIC_PEAK <= _HOURLY_TRAFFIC[hour] / _TRAFFIC_MEAN or t >= self.end_ms:
                return t

    # -- customers -----------------------------------------------------------------------------------
    def register_customer(self) -> Iterator[Transaction]:
        d = self.decide
        customer_id = _uuid(self.keys)
        country = d.choices(list(_COUNTRIES), weights=[c[0] for c in _COUNTRIES.values()])[0]
        first, last = d.choice(_FIRST_NAMES), d.choice(_LAST_NAMES)
        tx = self.tx(CUSTOMER_SERVICE, "customer.register")
        customer = tx.insert(
            Customer(
                customer_id=customer_id,
                email=_email(first, last, customer_id, 1),
                first_name=first,
                last_name=last,
                phone=_phone(d, country) if d.random() < 0.8 else None,
                country=country,
                city=d.choice(_COUNTRIES[country][3]),
                marketing_opt_in=d.random() < 0.4,
                registered_at=self.now,
                created_at=self.now,
                created_by=CUSTOMER_SERVICE,
                updated_at=self.now,
                updated_by=CUSTOMER_SERVICE,
            )
        )
        self.street[customer_id] = _street(d)
        self.active_customers.append(customer_id)
        tx.event("user.registered", CUSTOMER_SERVICE, _payload(customer), user_id=customer_id)
        yield tx.build()
        self.schedule(self.now_ms + int(d.expovariate(0.15) * _MS_PER_DAY), self.update_customer, customer_id)
        self.schedule(self.now_ms + int(d.expovariate(0.01) * _MS_PER_DAY), self.soft_delete_customer, customer_id)

    def update_customer(self, customer_id: UUID) -> Iterator[Transaction]:
        customer = self.rows["customers"][customer_id]
        assert isinstance(customer, Customer)
        if customer.deleted_at is not None:
            return
        d = self.decide
        tx = self.tx(CUSTOMER_SERVICE, "customer.update")
        kind = d.choices(("email", "phone", "address", "marketing"), weights=(30, 25, 25, 20))[0]
        if kind == "email":
            changes = {"email": _email(customer.first_name, customer.last_name, customer_id, customer.version + 1)}
        elif kind == "phone":
            changes = {"phone": _phone(d, customer.country)}
        elif kind == "address":
            country = customer.country if d.random() < 0.85 else d.choice(list(_COUNTRIES))
            changes = {"country": country, "city": d.choice(_COUNTRIES[country][3])}
            self.street[customer_id] = _street(d)
        else:
            changes = {"marketing_opt_in": not customer.marketing_opt_in}
        after = tx.update(customer, CUSTOMER_SERVICE, **changes)
        tx.event("user.updated", CUSTOMER_SERVICE, _payload(after), user_id=customer_id, changedFields=sorted(changes))
        yield tx.build()
        self.schedule(self.now_ms + int(d.expovariate(0.15) * _MS_PER_DAY), self.update_customer, customer_id)

    def soft_delete_customer(self, customer_id: UUID) -> Iterator[Transaction]:
        customer = self.rows["customers"][customer_id]
        tx = self.tx(CUSTOMER_SERVICE, "customer.delete")
        after = tx.update(customer, CUSTOMER_SERVICE, deleted_at=self.now, deleted_by=CUSTOMER_SERVICE)
        self.active_customers.remove(customer_id)
        tx.event(
            "user.updated", CUSTOMER_SERVICE, _payload(after), user_id=customer_id, changedFields=["deleted_at"]
        )
        yield tx.build()

    # -- catalog and inventory -----------------------------------------------------------------------
    def create_product(self) -> Iterator[Transaction]:
        d = self.decide
        category = d.choice(list(_CATALOG))
        brands, items, (low, high) = _CATALOG[category]
        brand, item, color = d.choice(brands), d.choice(items), d.choice(_COLORS)
        price = money(max(low, round(d.uniform(low, high))) - Decimal("0.01"))
        product_id = _uuid(self.keys)
        tx = self.tx(CATALOG_SERVICE, "product.create")
        tx.insert(
            Product(
                product_id=product_id,
                sku=f"{category[:3].upper()}-{product_id.hex[:10].upper()}",
                name=f"{brand} {item} ({color})",
                category=category,
                brand=brand,
                price=price,
                cost=money(price * Decimal(str(round(d.uniform(0.35, 0.7), 2)))),
                is_active=True,
                attributes={"color": color, "weight_kg": round(d.uniform(0.1, 4.0), 2), "tags": [category.lower()]},
                created_at=self.now,
                created_by=CATALOG_SERVICE,
                updated_at=self.now,
                updated_by=CATALOG_SERVICE,
            )
        )
        self.inventory_of[product_id] = []
        for warehouse in sorted(d.sample(_WAREHOUSES, d.randint(1, 3))):
            row = tx.insert(
                InventoryItem(
                    inventory_id=_uuid(self.keys),
                    product_id=product_id,
                    warehouse_code=warehouse,
                    quantity_on_hand=d.randint(150, 600),
                    quantity_reserved=0,
                    reorder_point=d.choice((20, 30, 50)),
                    created_at=self.now,
                    created_by=INVENTORY_SERVICE,
                    updated_at=self.now,
                    updated_by=INVENTORY_SERVICE,
                )
            )
            self.inventory_of[product_id].append(row.key)
        self.active_products.append(product_id)
        yield tx.build()
        self.schedule(self.now_ms + int(d.expovariate(0.2) * _MS_PER_DAY), self.reprice_product, product_id)
        self.schedule(self.now_ms + int(d.expovariate(0.02) * _MS_PER_DAY), self.deactivate_product, product_id)

    def launch_product(self) -> Iterator[Transaction]:
        yield from self.create_product()
        self.schedule(self.now_ms + int(self.decide.expovariate(1.0) * _MS_PER_DAY), self.launch_product)

    def reprice_product(self, product_id: UUID) -> Iterator[Transaction]:
        product = self.rows["products"][product_id]
        assert isinstance(product, Product)
        if not product.is_active:
            return
        d = self.decide
        factor = Decimal(str(round(d.choice((d.uniform(0.8, 0.95), d.uniform(1.03, 1.15))), 3)))
        price = max(money("0.99"), money(product.price * factor))
        tx = self.tx(CATALOG_SERVICE, "product.reprice")
        tx.update(product, CATALOG_SERVICE, price=price)
        yield tx.build()
        self.schedule(self.now_ms + int(d.expovariate(0.2) * _MS_PER_DAY), self.reprice_product, product_id)

    def deactivate_product(self, product_id: UUID) -> Iterator[Transaction]:
        product = self.rows["products"][product_id]
        if len(self.active_products) <= 10:  # keep a catalog to sell from
            return
        tx = self.tx(CATALOG_SERVICE, "product.deactivate")
        tx.update(product, CATALOG_SERVICE, is_active=False)
        self.active_products.remove(product_id)
        yield tx.build()
        self.schedule(self.after(3600, 6 * 3600), self.remove_inventory_of_inactive, product_id)

    def remove_inventory_of_inactive(self, product_id: UUID) -> Iterator[Transaction]:
        """Hard-delete the stock rows of a discontinued product that hold no reservations."""
        inventory = self.rows["inventory"]
        removable = [i for i in self.inventory_of[product_id] if inventory[i].quantity_reserved == 0]
        if not removable:
            return
        tx = self.tx(INVENTORY_SERVICE, "inventory.remove_discontinued")
        for inventory_id in removable:
            tx.delete(inventory[inventory_id])
            self.inventory_of[product_id].remove(inventory_id)
            self.restock_pending.discard(inventory_id)
        yield tx.build()

    def restock(self, inventory_id: UUID) -> Iterator[Transaction]:
        self.restock_pending.discard(inventory_id)
        row = self.rows["inventory"].get(inventory_id)
        if row is None:
            return
        assert isinstance(row, InventoryItem)
        tx = self.tx(INVENTORY_SERVICE, "inventory.restock")
        added = row.reorder_point * self.decide.randint(4, 8)
        tx.update(row, INVENTORY_SERVICE, quantity_on_hand=row.quantity_on_hand + added)
        yield tx.build()

    def _adjust_stock(self, tx: _TxBuilder, inventory_id: UUID, on_hand: int = 0, reserved: int = 0) -> None:
        row = self.rows["inventory"][inventory_id]
        assert isinstance(row, InventoryItem)
        row = tx.update(
            row,
            INVENTORY_SERVICE,
            quantity_on_hand=row.quantity_on_hand + on_hand,
            quantity_reserved=row.quantity_reserved + reserved,
        )
        assert isinstance(row, InventoryItem)
        if row.quantity_on_hand - row.quantity_reserved < row.reorder_point and inventory_id not in self.restock_pending:
            self.restock_pending.add(inventory_id)
            self.schedule(self.after(4 * 3600, 24 * 3600), self.restock, inventory_id)

    # -- storefront sessions -------------------------------------------------------------------------
    def session(self) -> Iterator[Transaction]:
        self.schedule(self._next_session_ms(), self.session)
        d = self.decide
        if not self.active_products:
            return
        converts = bool(self.active_customers) and d.random() < CONVERSION
        user_id: UUID | None = None
        if self.active_customers and (converts or d.random() < 0.7):
            # Early (loyal) customers are picked more often, which gives the customer base a long tail.
            user_id = self.active_customers[int(len(self.active_customers) * d.random() ** 2)]
        session_id, correlation_id = _uuid(self.ids), _uuid(self.ids)
        channel = d.choices([c for c, _ in _CHANNELS], weights=[w for _, w in _CHANNELS])[0]
        tx = self.tx(STOREFRONT, "storefront.session")
        context = {"correlation_id": correlation_id, "user_id": user_id, "session_id": session_id}

        t = self.now_ms
        viewed: list[Product] = []
        for _ in range(d.randint(2, 8) if converts else d.randint(1, 6)):
            product = self.rows["products"][d.choice(self.active_products)]
            assert isinstance(product, Product)
            viewed.append(product)
            tx.event("product.viewed", STOREFRONT, _view_payload(product), at=self.at(t), channel=channel, **context)
            t += int(d.uniform(5, 90) * 1000)

        distinct = list({p.product_id: p for p in viewed}.values())
        if converts:
            added = d.sample(distinct, d.randint(1, min(4, len(distinct))))
        else:
            added = [p for p in distinct if d.random() < 0.25]
        cart: dict[UUID, int] = {}
        for product in added:
            quantity = d.choices((1, 2, 3), weights=(75, 20, 5))[0]
            cart[product.product_id] = quantity
            tx.event(
                "cart.item_added", STOREFRONT, _cart_payload(product, quantity), at=self.at(t), channel=channel, **context
            )
            t += int(d.uniform(10, 60) * 1000)
        if len(cart) >= (2 if converts else 1) and d.random() < 0.3:
            product_id = d.choice(list(cart))
            product = self.rows["products"][product_id]
            assert isinstance(product, Product)
            tx.event(
                "cart.item_removed",
                STOREFRONT,
                _cart_payload(product, cart.pop(product_id)),
                at=self.at(t),
                channel=channel,
                **context,
            )
            t += int(d.uniform(10, 60) * 1000)

        tx.events[:] = [e for e in tx.events if e.timestamp < self.config.end]
        if tx.events:
            yield tx.build()
        if converts and cart:
            assert user_id is not None
            self.schedule(t + int(d.uniform(30, 180) * 1000), self.place_order, user_id, cart, session_id, correlation_id)

    # -- orders --------------------------------------------------------------------------------------
    def place_order(
        self, customer_id: UUID, cart: dict[UUID, int], session_id: UUID, correlation_id: UUID
    ) -> Iterator[Transaction]:
        customer = self.rows["customers"][customer_id]
        assert isinstance(customer, Customer)
        products = [self.rows["products"][p] for p in cart]
        lines = [(p, cart[p.key]) for p in products if isinstance(p, Product) and p.is_active]
        if customer.deleted_at is not None or not lines:
            return
        d = self.decide
        order_id = _uuid(self.keys)
        tx = self.tx(ORDER_SERVICE, "order.create")
        items: list[OrderItem] = []
        for product, quantity in lines:
            gross = product.price * quantity
            discount = money(gross * Decimal("0.10")) if d.random() < 0.1 else money(0)
            items.append(
                OrderItem(
                    order_item_id=_uuid(self.keys),
                    order_id=order_id,
                    product_id=product.product_id,
                    quantity=quantity,
                    unit_price=product.price,
                    discount_amount=discount,
                    line_total=money(gross - discount),
                    created_at=self.now,
                    created_by=ORDER_SERVICE,
                    updated_at=self.now,
                    updated_by=ORDER_SERVICE,
                )
            )
        subtotal = money(sum((i.line_total for i in items), Decimal(0)))
        coupon = money(subtotal * Decimal("0.10")) if d.random() < 0.12 else money(0)
        taxable = subtotal - coupon
        tax = money(taxable * _COUNTRIES[customer.country][2])
        shipping = money(0) if taxable >= 75 else money("5.99")
        order = tx.insert(
            Order(
                order_id=order_id,
                customer_id=customer_id,
                status="PENDING",
                order_ts=self.now,
                subtotal=subtotal,
                discount_amount=coupon,
                tax_amount=tax,
                shipping_amount=shipping,
                total_amount=money(subtotal - coupon + tax + shipping),
                currency=CURRENCY,
                shipping_address={
                    "name": f"{customer.first_name} {customer.last_name}",
                    "line1": self.street[customer_id],
                    "city": customer.city,
                    "country": customer.country,
                    "postal_code": f"{d.randint(10000, 99999)}",
                },
                created_at=self.now,
                created_by=ORDER_SERVICE,
                updated_at=self.now,
                updated_by=ORDER_SERVICE,
            )
        )
        for item in items:
            tx.insert(item)
        assert isinstance(order, Order)
        self.orders[order_id] = _OrderState(order, items, correlation_id)
        self.pending_since[order_id] = self.now_ms
        tx.event(
            "order.created",
            ORDER_SERVICE,
            _payload(order) | {"items": [_payload(i) for i in items]},
            correlation_id=correlation_id,
            user_id=customer_id,
            session_id=session_id,
        )
        yield tx.build()

        fate = d.random()
        if fate < 0.07:
            return  # abandoned: stays PENDING until the cleanup deletes it
        if fate < 0.10:
            self.schedule(self.after(300, 3600), self.cancel_order, order_id, "customer_cancelled")
        else:
            self.schedule(self.after(60, 900), self.process_payment, order_id)

    def process_payment(self, order_id: UUID) -> Iterator[Transaction]:
        state = self.orders[order_id]
        order, d = state.order, self.decide
        method = d.choices([m for m, _ in _PAYMENT_METHODS], weights=[w for _, w in _PAYMENT_METHODS])[0]
        failed = d.random() < (0.08 if state.failed_attempts == 0 else 0.03)
        payment = Payment(
            payment_id=_uuid(self.keys),
            order_id=order_id,
            method=method,
            status="FAILED" if failed else "AUTHORIZED",
            amount=order.total_amount,
            currency=order.currency,
            provider_ref=f"psp_{d.getrandbits(64):016x}",
            processed_at=self.now,
            created_at=self.now,
            created_by=PAYMENT_SERVICE,
            updated_at=self.now,
            updated_by=PAYMENT_SERVICE,
        )
        who = {"correlation_id": state.correlation_id, "user_id": order.customer_id}
        if failed:
            tx = self.tx(PAYMENT_SERVICE, "payment.fail")
            state.payments.append(tx.insert(payment))
            state.failed_attempts += 1
            tx.event("payment.failed", PAYMENT_SERVICE, _payload(payment) | {"reason": "card_declined"}, **who)
            yield tx.build()
            if state.failed_attempts == 1 and d.random() < 0.65:
                self.schedule(self.after(300, 1800), self.process_payment, order_id)
            else:
                self.schedule(self.after(1800, 7200), self.cancel_order, order_id, "payment_failed")
            return

        tx = self.tx(ORDER_SERVICE, "order.confirm")
        state.payments.append(tx.insert(payment))
        state.order = tx.update(order, ORDER_SERVICE, status="CONFIRMED")
        del self.pending_since[order_id]
        for item in state.items:
            stock = [self.rows["inventory"][i] for i in self.inventory_of[item.product_id]]
            if stock:
                best = max(stock, key=lambda r: r.quantity_on_hand - r.quantity_reserved)
                self._adjust_stock(tx, best.key, reserved=item.quantity)
                state.reservations.append((best.key, item.quantity))
        tx.event("payment.processed", PAYMENT_SERVICE, _payload(payment), **who)
        tx.event("order.confirmed", ORDER_SERVICE, _payload(state.order), **who)
        yield tx.build()
        if d.random() < 0.05:
            self.schedule(self.after(1800, 12 * 3600), self.cancel_order, order_id, "customer_cancelled")
        else:
            self.schedule(self.after(2 * 3600, 30 * 3600), self.ship_order, order_id)

    def cancel_order(self, order_id: UUID, reason: str) -> Iterator[Transaction]:
        state = self.orders[order_id]
        tx = self.tx(ORDER_SERVICE, "order.cancel")
        who = {"correlation_id": state.correlation_id, "user_id": state.order.customer_id}
        was = state.order.status
        state.order = tx.update(state.order, ORDER_SERVICE, status="CANCELLED")
        self.pending_since.pop(order_id, None)
        if was == "CONFIRMED":
            for i, payment in enumerate(state.payments):
                if payment.status == "AUTHORIZED":
                    refunded = tx.update(payment, PAYMENT_SERVICE, status="REFUNDED", processed_at=self.now)
                    state.payments[i] = refunded
                    tx.event("payment.processed", PAYMENT_SERVICE, _payload(refunded), **who)
            for inventory_id, quantity in state.reservations:
                self._adjust_stock(tx, inventory_id, reserved=-quantity)
            state.reservations.clear()
        tx.event("order.cancelled", ORDER_SERVICE, _payload(state.order) | {"reason": reason}, **who)
        yield tx.build()

    def ship_order(self, order_id: UUID) -> Iterator[Transaction]:
        state, d = self.orders[order_id], self.decide
        tx = self.tx(SHIPPING_SERVICE, "order.ship")
        who = {"correlation_id": state.correlation_id, "user_id": state.order.customer_id}
        for i, payment in enumerate(state.payments):
            if payment.status == "AUTHORIZED":
                captured = tx.update(payment, PAYMENT_SERVICE, status="CAPTURED", processed_at=self.now)
                state.payments[i] = captured
                tx.event("payment.processed", PAYMENT_SERVICE, _payload(captured), **who)
        state.order = tx.update(state.order, ORDER_SERVICE, status="SHIPPED")
        carrier = d.choice(_CARRIERS)
        shipment = tx.insert(
            Shipment(
                shipment_id=_uuid(self.keys),
                order_id=order_id,
                carrier=carrier,
                tracking_number=f"{carrier[:2].upper()}{d.getrandbits(40):013d}",
                status="DISPATCHED",
                shipped_at=self.now,
                delivered_at=None,
                created_at=self.now,
                created_by=SHIPPING_SERVICE,
                updated_at=self.now,
                updated_by=SHIPPING_SERVICE,
            )
        )
        state.shipment = shipment
        for inventory_id, quantity in state.reservations:
            self._adjust_stock(tx, inventory_id, on_hand=-quantity, reserved=-quantity)
        state.reservations.clear()
        tx.event("shipment.dispatched", SHIPPING_SERVICE, _payload(shipment), **who)
        yield tx.build()
        self.schedule(self.after(4 * 3600, 20 * 3600), self.mark_in_transit, order_id)

    def mark_in_transit(self, order_id: UUID) -> Iterator[Transaction]:
        state = self.orders[order_id]
        tx = self.tx(SHIPPING_SERVICE, "shipment.in_transit")
        state.shipment = tx.update(state.shipment, SHIPPING_SERVICE, status="IN_TRANSIT")
        yield tx.build()
        self.schedule(self.after(12 * 3600, 4 * 24 * 3600), self.deliver_order, order_id)

    def deliver_order(self, order_id: UUID) -> Iterator[Transaction]:
        state = self.orders[order_id]
        tx = self.tx(SHIPPING_SERVICE, "order.deliver")
        who = {"correlation_id": state.correlation_id, "user_id": state.order.customer_id}
        state.shipment = tx.update(
            state.shipment, SHIPPING_SERVICE, status="DELIVERED", delivered_at=self.now
        )
        state.order = tx.update(state.order, ORDER_SERVICE, status="DELIVERED")
        tx.event("shipment.delivered", SHIPPING_SERVICE, _payload(state.shipment), **who)
        yield tx.build()

    def cleanup_abandoned_orders(self) -> Iterator[Transaction]:
        """Hourly job: hard-delete PENDING orders older than a day (never paid), items first."""
        cutoff = self.now_ms - _MS_PER_DAY
        stale = [order_id for order_id, since in self.pending_since.items() if since < cutoff]
        if stale:
            tx = self.tx(ORDER_SERVICE, "order.purge_abandoned")
            for order_id in stale:
                state = self.orders.pop(order_id)
                del self.pending_since[order_id]
                for item in state.items:
                    tx.delete(item)
                tx.delete(state.order)
            yield tx.build()
        self.schedule(self.now_ms + _MS_PER_HOUR, self.cleanup_abandoned_orders)


def simulate(config: WorkloadConfig) -> Iterator[Transaction]:
    """The workload's transactions in commit order (non-decreasing simulated time)."""
    return _Shop(config).run()


# -- small pure helpers ------------------------------------------------------------------------------------


def _email(first: str, last: str, customer_id: UUID, version: int) -> str:
    local = f"{first}.{last}".lower().replace("ü", "ue")
    domain = "example.com" if version == 1 else "mail.example.net"
    suffix = customer_id.hex[:12] if version == 1 else f"{customer_id.hex[:12]}.v{version}"
    return f"{local}.{suffix}@{domain}"


def _phone(d: random.Random, country: str) -> str:
    return f"{_COUNTRIES[country][1]} {d.randint(200, 999)} {d.randint(100, 999)} {d.randint(1000, 9999)}"


def _street(d: random.Random) -> str:
    return f"{d.randint(1, 240)} {d.choice(_STREETS)}"


def _payload(row: Row) -> dict:
    return row.columns()


def _view_payload(product: Product) -> dict:
    return {
        "product_id": product.product_id,
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "price": product.price,
    }


def _cart_payload(product: Product, quantity: int) -> dict:
    return _view_payload(product) | {"quantity": quantity}
