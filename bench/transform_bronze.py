"""Synthetic bronze for bench/transform.py: the shop's CDC tables and business events at any scale.

Everything is DuckDB SQL over `range()`, with `hsh(key, 'salt')` as the only source of randomness, so
the same scale gives the same lake. Rows are exactly what the ingestion writes (BRONZE_CDC and
BRONZE_EVENTS: Debezium `after`/`before` JSON with decimals as exact strings, ISO timestamps, jsonb as
JSON text; lsn an integer as text; offsets increasing per table; a tombstone after every delete), streamed
from DuckDB as Arrow record batches into `write_deltalake`, partitioned as the ingestion partitions.

Four phases:
  0  the initial load: N orders over `days` days (default 60) (~N/10 customers, ~N/500 products, 2 inventory rows per
     product, ~2.5 items per order, payments, shipments, status updates, abandoned orders hard-deleted,
     soft deletes, customer email changes, a few redelivered duplicates; ~4 funnel events per order);
  1  "1% new data", appended with higher offsets/LSNs and a later ingested_at: N/100 new orders on a day
     after the initial window, status updates of ~1% of the existing orders, e-mail changes of ~1% of
     the customers, re-pricing of ~1% of the products, new customers, and the new orders' events:
     changes spread uniformly over all keys, the worst case for an incremental run;
  2  the lake as it stands at the cut, a day before the end of the window (phase 0's changes before it),
     ingested as it happened (each row two minutes after its change, an event object after its last line);
  3  the hour after the cut, on top of phase 2: what the shop does in one hour. That hour's orders with
     their items, payments and confirmations, the shipments and deliveries of orders placed days
     before, the rare customer, product and stock changes, and that hour's events.

Not generated (no model reads them): bronze/cdc_transactions, bronze/cdc_schemas, quarantine.
`raw_payload` holds the Debezium payload with the decoded row images (the connector's would carry
decimals as base64); `value_schema_id` is null, which bronze reads as "raw_payload is the whole value".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from pipelines.cdc.bronze_schema import BRONZE_CDC
from pipelines.events.bronze_schema import BRONZE_EVENTS, PARTITION_BY

FIRST_DAY = date(2026, 9, 1)
DAYS = 60
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
LSN_EPOCH = date(2026, 1, 1)
OBJECT_LINES = 10_000
BATCH_ROWS = 100_000


def _us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


@dataclass(frozen=True)
class Scale:
    orders: int
    days: int = DAYS

    @property
    def increment_day(self) -> date:
        # a week after the initial window: every step of an initial order is earlier
        return FIRST_DAY + timedelta(days=self.days + 7)

    @property
    def cut_us(self) -> int:
        """Phases 2 and 3: the lake holds the changes before this instant, the hour after it is phase 3."""
        return _us(FIRST_DAY) + (self.days - 1) * DAY_US

    @property
    def customers(self) -> int:
        return max(100, self.orders // 10)

    @property
    def products(self) -> int:
        return max(50, self.orders // 500)

    @property
    def new_orders(self) -> int:
        return max(1, self.orders // 100)

    @property
    def new_customers(self) -> int:
        return max(1, self.customers // 100)


# ------------------------------------------------------------------------------------------------------
# helpers every table uses
# ------------------------------------------------------------------------------------------------------
MACROS = """
-- randomness: a stable hash of the key and a salt, as a non-negative BIGINT
create or replace macro hsh(a, b) as (hash(a, b) >> 1)::bigint, (a, b, c) as (hash(a, b, c) >> 1)::bigint,
    (a, b, c, d) as (hash(a, b, c, d) >> 1)::bigint;
create or replace macro ts_text(us) as strftime(make_timestamp(us), '%Y-%m-%dT%H:%M:%S.%fZ');
create or replace macro ts_ms_text(us) as strftime(make_timestamp(us), '%Y-%m-%dT%H:%M:%S.%gZ');
create or replace macro money(cents) as (cents // 100)::varchar || '.' || lpad((cents % 100)::varchar, 2, '0');
create or replace macro uid(kind, n) as md5(kind || '-' || n::varchar)::uuid::varchar;
create or replace macro pick(items, seed) as items[1 + seed % len(items)];
create or replace macro country_of(i) as pick(['US', 'US', 'GB', 'DE', 'FR', 'JP', 'PT'], hsh(i, 'country'));
create or replace macro currency_of(country) as
    case country when 'US' then 'USD' when 'GB' then 'GBP' when 'JP' then 'JPY' else 'EUR' end;
create or replace macro price_cents(j) as 199 + hsh(j, 'price') % 29800;
create or replace macro audit(created_us, author, updated_us, version, deleted_us) as
    '"created_at":"' || ts_text(created_us) || '","created_by":"' || author
    || '","updated_at":"' || ts_text(updated_us) || '","updated_by":"' || author
    || '","version":' || version::varchar
    || ',"deleted_at":' || coalesce('"' || ts_text(deleted_us) || '"', 'null')
    || ',"deleted_by":' || case when deleted_us is null then 'null' else '"ops"' end || '}';
"""

FIRST_NAMES = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Jonas", "Sofia", "Amara", "Diego", "Zoe"]
LAST_NAMES = ["Novak", "Chen", "Silva", "Okafor", "Kowalski", "Haddad", "Berg", "Martin", "Nguyen", "Jansen", "Rossi"]
CITIES = {"US": ["Austin", "Boston", "Seattle"], "GB": ["Leeds", "Manchester"], "DE": ["Berlin", "Hamburg"],
          "FR": ["Lyon", "Paris"], "JP": ["Osaka", "Tokyo"], "PT": ["Porto", "Lisbon"]}
CATEGORIES = ["Electronics", "Apparel", "Sports", "Home", "Books", "Toys"]
BRANDS = ["Voltix", "Peakform", "Northwind", "Nimbus", "Auralink", "Evergreen"]
NOUNS = ["Smart Watch", "Yoga Mat", "Running Shoes", "Webcam", "Portable SSD", "Desk Lamp", "Backpack"]
COLORS = ["grey", "navy", "teal", "black", "red"]
STREETS = ["Market Sq", "High St", "Station Rd", "Park Rd", "Main St", "Oak Ave"]


def _list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _city_case(country: str) -> str:
    return "case " + country + " " + " ".join(f"when '{c}' then {_list(v)}" for c, v in CITIES.items()) + " end"


# ------------------------------------------------------------------------------------------------------
# per entity: its versions (key, step time, op, phase, row JSON); the row of a `d` step is not used
# ------------------------------------------------------------------------------------------------------
def _plans(conn, scale: Scale, phase: int) -> None:
    n, e0, span = scale.orders, _us(FIRST_DAY), scale.days * DAY_US
    inc0 = _us(scale.increment_day)
    new_gap = DAY_US // scale.new_orders
    # phase 1 touches the new orders and ~1% of the existing ones; its plan holds only those
    order_keys = (f"select k, false as is_new from range({n}) r(k)" if phase == 0 else
                  f"select k, false as is_new from range({n}) r(k) where hsh(k, 'inc') % 70 = 0 "
                  f"union all select k, true from range({n}, {n + scale.new_orders}) r(k)")
    conn.execute(f"""
    create or replace temp table order_plan as
    with keys as ({order_keys}),
    base as (
        select
            k, is_new,
            uid('order', k) as order_id,
            hsh(k, 'customer') % {scale.customers} as customer_index,
            hsh(k, 'path') % 100 as path_pick,
            case when is_new then {inc0} + (k - {n}) * {new_gap} + hsh(k, 'jitter') % {new_gap}
                 else {e0} + k * {span // n} + hsh(k, 'jitter') % {span // n}
            end // 1000 * 1000 as t0,
            hsh(k, 'soft') % 50 = 0 as soft_deleted,
            hsh(k, 'discount') % 4 = 0 as has_discount,
            pick([0, 599, 999], hsh(k, 'shipping')) as shipping_cents,
            {phase} = 1 and not is_new as updated_in_increment,
            {inc0} + hsh(k, 'inc_at') % {DAY_US} // 1000 * 1000 as inc_t
        from keys
    )
    select
        *,
        case when path_pick < 3 then 'deleted' when path_pick < 6 then 'pending'
             when path_pick < 12 then 'cancelled' when path_pick < 52 then 'confirmed'
             when path_pick < 77 then 'shipped' else 'delivered' end as path
    from base
    """)
    conn.execute(f"""
    create or replace temp table item_plan as
    with lines as (
        select k, t0, path, is_new, unnest(range(1 + hsh(k, 'items') % 4)) as m from order_plan
    )
    select
        k, m, t0, path, is_new,
        uid('item', k || '-' || m) as order_item_id,
        hsh(k, m, 'product') % {scale.products} as j,
        1 + hsh(k, m, 'quantity') % 3 as quantity,
        price_cents(hsh(k, m, 'product') % {scale.products}) as unit_cents,
        case when hsh(k, m, 'discount') % 10 = 0
             then (1 + hsh(k, m, 'quantity') % 3) * price_cents(hsh(k, m, 'product') % {scale.products}) // 20
             else 0 end as discount_cents
    from lines
    """)
    conn.execute(f"""
    create or replace temp table order_amounts as
    with totals as (
        select k, sum(quantity * unit_cents - discount_cents) as subtotal from item_plan group by k
    ),
    amounts as (
        select k, subtotal, case when p.has_discount then subtotal // 10 else 0 end as discount
        from totals join order_plan p using (k)
    )
    select
        p.*, subtotal, discount, (subtotal - discount) * 8 // 100 as tax,
        subtotal - discount + (subtotal - discount) * 8 // 100 + shipping_cents as total,
        uid('customer', customer_index) as customer_id,
        country_of(customer_index) as country,
        '{{"city": "' || pick({_city_case('country_of(customer_index)')}, hsh(k, 'city'))
            || '", "name": "' || pick({_list(FIRST_NAMES)}, hsh(customer_index, 'first'))
            || ' ' || pick({_list(LAST_NAMES)}, hsh(customer_index, 'last'))
            || '", "line1": "' || (1 + hsh(k, 'street_no') % 300)::varchar || ' ' || pick({_list(STREETS)}, hsh(k, 'street'))
            || '", "country": "' || country_of(customer_index)
            || '", "postal_code": "' || (10000 + hsh(k, 'postal') % 90000)::varchar || '"}}' as address
    from order_plan p join amounts using (k)
    """)


def _order_versions(conn) -> None:
    conn.execute(f"""
    create or replace temp table order_versions as
    with steps as (
        select
            o.*,
            unnest(
                [{{'op': 'c', 'status': 'PENDING', 'at': 0, 'soft': false, 'phase': is_new::int}}]
                || case path
                    when 'deleted' then [{{'op': 'd', 'status': 'PENDING', 'at': 3600000000, 'soft': false, 'phase': is_new::int}}]
                    when 'cancelled' then [{{'op': 'u', 'status': 'CANCELLED', 'at': 1800000000, 'soft': false, 'phase': is_new::int}}]
                    when 'confirmed' then [{{'op': 'u', 'status': 'CONFIRMED', 'at': 300000000, 'soft': false, 'phase': is_new::int}}]
                    when 'shipped' then [{{'op': 'u', 'status': 'CONFIRMED', 'at': 300000000, 'soft': false, 'phase': is_new::int}},
                                         {{'op': 'u', 'status': 'SHIPPED', 'at': {DAY_US}, 'soft': false, 'phase': is_new::int}}]
                    when 'delivered' then [{{'op': 'u', 'status': 'CONFIRMED', 'at': 300000000, 'soft': false, 'phase': is_new::int}},
                                           {{'op': 'u', 'status': 'SHIPPED', 'at': {DAY_US}, 'soft': false, 'phase': is_new::int}},
                                           {{'op': 'u', 'status': 'DELIVERED', 'at': {3 * DAY_US}, 'soft': false, 'phase': is_new::int}}]
                    else [] end
                || case when path = 'confirmed' and soft_deleted
                    then [{{'op': 'u', 'status': 'CONFIRMED', 'at': {2 * DAY_US}, 'soft': true, 'phase': is_new::int}}]
                    else [] end
                || case when updated_in_increment then
                    case when path = 'pending' then [{{'op': 'u', 'status': 'CANCELLED', 'at': inc_t - t0, 'soft': false, 'phase': 1}}]
                         when path = 'confirmed' and not soft_deleted then [{{'op': 'u', 'status': 'SHIPPED', 'at': inc_t - t0, 'soft': false, 'phase': 1}}]
                         when path = 'shipped' then [{{'op': 'u', 'status': 'DELIVERED', 'at': inc_t - t0, 'soft': false, 'phase': 1}}]
                         else [] end
                    else [] end,
                recursive := true
            )
        from order_amounts o
    ),
    numbered as (
        select *, t0 + "at" as t, row_number() over (partition by k order by "at") as version from steps
    )
    select
        order_id as key_id, t, op, phase,
        '{{"order_id":"' || order_id || '","customer_id":"' || customer_id || '","status":"' || status
        || '","order_ts":"' || ts_text(t0) || '","subtotal":"' || money(subtotal)
        || '","discount_amount":"' || money(discount) || '","tax_amount":"' || money(tax)
        || '","shipping_amount":"' || money(shipping_cents) || '","total_amount":"' || money(total)
        || '","currency":"' || currency_of(country) || '","shipping_address":' || to_json(address)::varchar || ','
        || audit(t0, 'order-service', t, version, case when soft then t end) as row_json
    from numbered
    """)


def _item_versions(conn) -> None:
    conn.execute("""
    create or replace temp table item_versions as
    with steps as (
        select i.*, 'c' as op, t0 as t from item_plan i
        union all
        select i.*, 'd', t0 + 3600000000 from item_plan i where path = 'deleted'
    )
    select
        order_item_id as key_id, t, op, is_new::int as phase,
        '{"order_item_id":"' || order_item_id || '","order_id":"' || uid('order', k)
        || '","product_id":"' || uid('product', j) || '","quantity":' || quantity::varchar
        || ',"unit_price":"' || money(unit_cents) || '","discount_amount":"' || money(discount_cents)
        || '","line_total":"' || money(quantity * unit_cents - discount_cents) || '",'
        || audit(t0, 'order-service', t0, 1, null) as row_json
    from steps
    """)


def _payment_and_shipment_versions(conn) -> None:
    conn.execute("""
    create or replace temp table payment_versions as
    with paid as (
        select *, t0 + 300000000 as paid_t from order_amounts where path in ('confirmed', 'shipped', 'delivered')
    ),
    steps as (
        select *, 'c' as op, 'AUTHORIZED' as status, paid_t as t, 1 as version from paid
        union all
        select *, 'u', 'CAPTURED', paid_t + 60000000, 2 from paid
    )
    select
        uid('payment', k) as key_id, t, op, is_new::int as phase,
        '{"payment_id":"' || uid('payment', k) || '","order_id":"' || order_id
        || '","method":"' || pick(['card', 'card', 'paypal', 'bank_transfer', 'gift_card'], hsh(k, 'method'))
        || '","status":"' || status || '","amount":"' || money(total) || '","currency":"' || currency_of(country)
        || '","provider_ref":"psp_' || substr(md5('psp-' || k), 1, 16) || '","processed_at":"' || ts_text(paid_t) || '",'
        || audit(paid_t, 'payment-service', t, version, null) as row_json
    from steps
    """)
    conn.execute(f"""
    create or replace temp table shipment_versions as
    with shipped as (
        select
            *,
            case when path in ('shipped', 'delivered') then t0 + {DAY_US} else inc_t end as ship_t,
            is_new::int as ship_phase
        from order_amounts
        where path in ('shipped', 'delivered')
           or (updated_in_increment and path = 'confirmed' and not soft_deleted)
    ),
    steps as (
        select *, 'c' as op, 'DISPATCHED' as status, ship_t as t, null::bigint as delivered_t, 1 as version,
               case when path = 'confirmed' then 1 else ship_phase end as phase
        from shipped
        union all
        select *, 'u', 'DELIVERED', t0 + {3 * DAY_US}, t0 + {3 * DAY_US}, 2, ship_phase
        from shipped where path = 'delivered'
        union all
        select *, 'u', 'DELIVERED', inc_t, inc_t, 2, 1
        from shipped where updated_in_increment and path = 'shipped'
    )
    select
        uid('shipment', k) as key_id, t, op, phase,
        '{{"shipment_id":"' || uid('shipment', k) || '","order_id":"' || order_id
        || '","carrier":"' || pick(['DHL', 'FedEx', 'UPS'], hsh(k, 'carrier'))
        || '","tracking_number":"TR' || lpad((hsh(k, 'tracking') % 10000000000000)::varchar, 13, '0')
        || '","status":"' || status || '","shipped_at":"' || ts_text(ship_t)
        || '","delivered_at":' || coalesce('"' || ts_text(delivered_t) || '"', 'null') || ','
        || audit(ship_t, 'shipping-service', t, version, null) as row_json
    from steps
    """)


def _customer_versions(conn, scale: Scale, phase: int) -> None:
    c, e0, span, inc0 = scale.customers, _us(FIRST_DAY), scale.days * DAY_US, _us(scale.increment_day)
    keys = (f"select i, false as is_new from range({c}) r(i)" if phase == 0 else
            f"select i, false as is_new from range({c}) r(i) where hsh(i, 'inc') % 100 = 0 "
            f"union all select i, true from range({c}, {c + scale.new_customers}) r(i)")
    conn.execute(f"""
    create or replace temp table customer_versions as
    with plan as (
        select
            i, is_new,
            case when is_new then {inc0} + hsh(i, 'registered') % {DAY_US}
                 else {e0} - 90 * {DAY_US} + hsh(i, 'registered') % (90 * {DAY_US}) end // 1000 * 1000 as reg_t,
            hsh(i, 'email') % 20 = 0 as changes_email,
            hsh(i, 'delete') % 1000 = 0 as deleted,
            {phase} = 1 and not is_new and hsh(i, 'delete') % 1000 <> 0 as updated_in_increment
        from ({keys})
    ),
    steps as (
        select i, reg_t, 'c' as op, reg_t as t, 0 as email_no, is_new::int as phase from plan
        union all
        select i, reg_t, 'u', ({e0} + hsh(i, 'email_at') % {span}) // 1000 * 1000, 1, 0 from plan where changes_email
        union all
        select i, reg_t, 'd', {e0} + {span} + hsh(i, 'delete_at') % {DAY_US} // 1000 * 1000, 1, 0 from plan where deleted
        union all
        select i, reg_t, 'u', ({inc0} + hsh(i, 'inc_at') % {DAY_US}) // 1000 * 1000, 2, 1 from plan where updated_in_increment
    ),
    numbered as (
        select
            *,
            pick({_list(FIRST_NAMES)}, hsh(i, 'first')) as first_name,
            pick({_list(LAST_NAMES)}, hsh(i, 'last')) as last_name,
            country_of(i) as country,
            row_number() over (partition by i order by t) as version
        from steps
    )
    select
        uid('customer', i) as key_id, t, op, phase,
        '{{"customer_id":"' || uid('customer', i) || '","email":"' || lower(first_name) || '.' || lower(last_name)
        || '.' || substr(md5('customer-' || i), 1, 12) || case email_no when 0 then '' else '+' || email_no::varchar end
        || '@example.com","first_name":"' || first_name || '","last_name":"' || last_name
        || '","phone":' || case when hsh(i, 'phone') % 5 = 0 then 'null'
                                else '"+1 ' || (200 + hsh(i, 'phone') % 800)::varchar || ' 555 '
                                     || lpad((hsh(i, 'phone_no') % 10000)::varchar, 4, '0') || '"' end
        || ',"country":"' || country || '","city":"' || pick({_city_case('country')}, hsh(i, 'city'))
        || '","marketing_opt_in":' || (hsh(i, 'opt_in') % 3 = 0)::varchar
        || ',"registered_at":"' || ts_text(reg_t) || '",'
        || audit(reg_t, 'customer-service', t, version, null) as row_json
    from numbered
    """)


def _product_versions(conn, scale: Scale, phase: int) -> None:
    p, e0, span, inc0 = scale.products, _us(FIRST_DAY), scale.days * DAY_US, _us(scale.increment_day)
    keys = (f"select j from range({p}) r(j)" if phase == 0 else
            f"select j from range({p}) r(j) where hsh(j, 'inc') % 100 = 0")
    conn.execute(f"""
    create or replace temp table product_plan as
    select
        j,
        ({e0} - 100 * {DAY_US} + hsh(j, 'created') % {DAY_US}) // 1000 * 1000 as created_t,
        hsh(j, 'reprice') % 10 = 0 as repriced,
        hsh(j, 'deactivate') % 100 = 0 as deactivated,
        ({e0} + {span} + {DAY_US} + hsh(j, 'deactivate_at') % {DAY_US}) // 1000 * 1000 as deactivate_t,
        {phase} = 1 and hsh(j, 'deactivate') % 100 <> 0 as updated_in_increment,
        ({inc0} + hsh(j, 'inc_at') % {DAY_US}) // 1000 * 1000 as inc_t,
        pick({_list(CATEGORIES)}, hsh(j, 'category')) as category
    from ({keys})
    """)
    conn.execute(f"""
    create or replace temp table product_versions as
    with steps as (
        select *, 'c' as op, created_t as t, 0 as price_no, true as active, 0 as phase from product_plan
        union all
        select *, 'u', ({e0} + hsh(j, 'reprice_at') % {span}) // 1000 * 1000, 1, true, 0 from product_plan where repriced
        union all
        select *, 'u', deactivate_t, case when repriced then 1 else 0 end, false, 0 from product_plan where deactivated
        union all
        select *, 'u', inc_t, 2, true, 1 from product_plan where updated_in_increment
    ),
    numbered as (
        select
            *,
            price_cents(j) * (100 + 10 * price_no) // 100 as price,
            row_number() over (partition by j order by t) as version,
            pick({_list(BRANDS)}, hsh(j, 'brand')) as brand,
            pick({_list(COLORS)}, hsh(j, 'color')) as color
        from steps
    )
    select
        uid('product', j) as key_id, t, op, phase,
        '{{"product_id":"' || uid('product', j) || '","sku":"' || upper(left(category, 3)) || '-'
        || upper(substr(md5('product-' || j), 1, 10)) || '","name":"' || brand || ' '
        || pick({_list(NOUNS)}, hsh(j, 'noun')) || ' (' || color || ')","category":"' || category
        || '","brand":"' || brand || '","price":"' || money(price) || '","cost":"' || money(price * 6 // 10)
        || '","is_active":' || active::varchar || ',"attributes":'
        || to_json('{{"tags": ["' || lower(category) || '"], "color": "' || color || '", "weight_kg": '
                   || (1 + hsh(j, 'weight') % 400) / 100 || '}}')::varchar || ','
        || audit(created_t, 'catalog-service', t, version, null) as row_json
    from numbered
    """)
    conn.execute(f"""
    create or replace temp table inventory_versions as
    with plan as (
        select p.*, w, uid('inventory', j || '-' || w) as inventory_id from product_plan p, (values (0), (1)) ws(w)
    ),
    steps as (
        select *, 'c' as op, created_t as t, 0 as step, 0 as phase from plan
        union all
        select plan.*, 'u', ({e0} + (s - 1) * {span // 4} + hsh(j, w, s, 'stock') % {span // 4}) // 1000 * 1000, s, 0
        from plan, (values (1), (2), (3)) ss(s)
        union all
        select *, 'd', deactivate_t, 0, 0 from plan where deactivated
        union all
        select *, 'u', inc_t, 4, 1 from plan where updated_in_increment
    ),
    numbered as (select *, row_number() over (partition by j, w order by t) as version from steps)
    select
        inventory_id as key_id, t, op, phase,
        '{{"inventory_id":"' || inventory_id || '","product_id":"' || uid('product', j)
        || '","warehouse_code":"' || ['WH-EAST', 'WH-EU'][w + 1] || '","quantity_on_hand":'
        || (500 - 20 * step)::varchar || ',"quantity_reserved":' || (2 * step)::varchar
        || ',"reorder_point":30,' || audit(created_t, 'inventory-service', t, version, null) as row_json
    from numbered
    """)


# ------------------------------------------------------------------------------------------------------
# versions -> bronze rows
# ------------------------------------------------------------------------------------------------------
CDC_TABLES = {  # bronze table -> (versions temp table, source table, key column)
    "cdc_customers": ("customer_versions", "customers", "customer_id"),
    "cdc_products": ("product_versions", "products", "product_id"),
    "cdc_inventory": ("inventory_versions", "inventory", "inventory_id"),
    "cdc_orders": ("order_versions", "orders", "order_id"),
    "cdc_order_items": ("item_versions", "order_items", "order_item_id"),
    "cdc_payments": ("payment_versions", "payments", "payment_id"),
    "cdc_shipments": ("shipment_versions", "shipments", "shipment_id"),
}


def ingested_at(scale: Scale, phase: int) -> datetime:
    """When phases 0 and 1 were ingested, each in one batch (see _stamp for 2 and 3)."""
    day = FIRST_DAY + timedelta(days=scale.days + 5) if phase == 0 else scale.increment_day + timedelta(days=4)
    return datetime(day.year, day.month, day.day, 1, 0, tzinfo=timezone.utc)


def _stamp(phase: int, loaded: datetime, t: str) -> str:
    """SQL: when bronze ingested a row whose change (or whose event object's last line) was at `t`. The
    lake and its hour were ingested as they happened, two minutes behind; the other phases in one batch."""
    if phase in (2, 3):
        return f"make_timestamp({t} + 120000000)::timestamptz"
    return f"timestamptz '{loaded.isoformat()}'"


def plan_phase(phase: int) -> int:
    """The phase whose plans a phase writes: 2 and 3 split phase 0's changes at the cut."""
    return 0 if phase in (2, 3) else phase


def in_phase(scale: Scale, phase: int, t: str = "t") -> str:
    """SQL: whether a change at time `t` of its plan phase's changes belongs to `phase`."""
    if phase == 2:
        return f"{t} < {scale.cut_us}"
    if phase == 3:
        return f"{t} >= {scale.cut_us} and {t} < {scale.cut_us + HOUR_US}"
    return "true"


def _cdc_rows_sql(scale: Scale, versions: str, source_table: str, key: str, phase: int, first_offset: int) -> str:
    topic = f"shop.public.{source_table}"
    lsn0 = _us(LSN_EPOCH)
    loaded = ingested_at(scale, phase)
    return f"""
    with changes as (
        -- REPLICA IDENTITY FULL: updates and deletes carry the previous row image
        select
            key_id, t, op, phase,
            case when op = 'd' then null else row_json end as after,
            case when op in ('u', 'd') then lag(row_json) over (partition by key_id order by t) end as before
        from {versions}
    ),
    current_phase as (select * from changes where phase = {plan_phase(phase)} and {in_phase(scale, phase)}),
    copies as (
        -- 0: the change; 1: the tombstone Kafka gets after a delete; 2: a redelivered duplicate
        select *, 0 as copy from current_phase
        union all select *, 1 from current_phase where op = 'd'
        union all select *, 2 from current_phase where hsh(key_id, t, 'redelivered') % 2000 = 0
    ),
    numbered as (
        select *, t - {lsn0} as lsn, {first_offset} + row_number() over (order by t, key_id, copy) - 1 as "offset"
        from copies
    )
    select
        '{topic}/0/' || "offset" as bronze_id,
        '{topic}' as topic,
        0::integer as "partition",
        "offset"::bigint as "offset",
        make_timestamp(t + 180000 + copy * 1000)::timestamptz as kafka_ts,
        case copy when 1 then 'tombstone' else 'change' end as kind,
        case when copy <> 1 then op end as op,
        case when copy <> 1 then 'postgresql' end as source_connector,
        case when copy <> 1 then 'shop' end as source_database,
        case when copy <> 1 then 'public' end as source_schema,
        case when copy <> 1 then '{source_table}' end as source_table,
        '{{"{key}":"' || key_id || '"}}' as record_key,
        case when copy <> 1 then before end as before,
        case when copy <> 1 then after end as after,
        []::varchar[] as unavailable_columns,
        case when copy <> 1 then lsn::varchar end as lsn,
        case when copy <> 1 then (t // 1000000)::varchar || ':' || lsn::varchar end as tx_id,
        case when copy <> 1 then make_timestamp(t)::timestamptz end as source_ts,
        case when copy <> 1 then '{{"id":"' || (t // 1000000)::varchar || ':' || lsn::varchar
                                 || '","total_order":1,"data_collection_order":1}}' end as "transaction",
        case when copy <> 1 then
            '{{"before":' || coalesce(before, 'null') || ',"after":' || coalesce(after, 'null')
            || ',"source":{{"version":"3.6.1.Final","connector":"postgresql","name":"shop","ts_ms":'
            || (t // 1000)::varchar || ',"snapshot":"false","db":"shop","sequence":"[\\"'
            || (lsn - 600)::varchar || '\\",\\"' || lsn::varchar || '\\"]","ts_us":' || t::varchar
            || ',"ts_ns":' || (t * 1000)::varchar || ',"schema":"public","table":"{source_table}","txId":'
            || (t // 1000000)::varchar || ',"lsn":' || lsn::varchar
            || ',"xmin":null,"origin":null,"origin_lsn":null}},"transaction":{{"id":"' || (t // 1000000)::varchar
            || ':' || lsn::varchar || '","total_order":1,"data_collection_order":1}},"op":"' || op
            || '","ts_ms":' || (t // 1000 + 180)::varchar || ',"ts_us":' || (t + 180000)::varchar
            || ',"ts_ns":' || ((t + 180000) * 1000)::varchar || '}}'
        end as raw_payload,
        null::varchar as value_schema_id,
        {_stamp(phase, loaded, 't')} as ingested_at,
        '{source_table}-phase-{phase}' as ingest_batch_id,
        cast({_stamp(phase, loaded, 't')} as date) as ingest_date
    from numbered
    order by "offset"
    """


# ------------------------------------------------------------------------------------------------------
# business events (bronze/events)
# ------------------------------------------------------------------------------------------------------
def _event_rows_sql(scale: Scale, phase: int) -> str:
    e0, span, inc0 = _us(FIRST_DAY), scale.days * DAY_US, _us(scale.increment_day)
    # sessions that browse and leave: 0.3 per order of the phase
    browse = (f"select b, ({e0} + hsh(b, 'browse_at') % {span}) // 1000 * 1000 as t from range({int(scale.orders * 0.3)}) r(b)"
              if plan_phase(phase) == 0 else
              f"select b, ({inc0} + hsh(b, 'browse_at') % {DAY_US}) // 1000 * 1000 as t "
              f"from range({int(scale.orders * 0.3)}, {int(scale.orders * 0.3) + int(scale.new_orders * 0.3)}) r(b)")
    loaded = ingested_at(scale, phase)
    product = """'{"product_id":"' || uid('product', j) || '","sku":"' || upper(left(category, 3)) || '-'
        || upper(substr(md5('product-' || j), 1, 10)) || '","name":"Item ' || j::varchar || '","category":"'
        || category || '","price":"' || money(price_cents(j)) || '"'"""
    return f"""
    with ordering as (
        select * from order_amounts where is_new::int = {plan_phase(phase)}
    ),
    first_items as (
        select k, arg_min(j, m) as j,
               '[' || string_agg('{{"order_item_id":"' || order_item_id || '","product_id":"' || uid('product', j)
                                 || '","quantity":' || quantity::varchar || ',"unit_price":"' || money(unit_cents)
                                 || '","line_total":"' || money(quantity * unit_cents - discount_cents) || '"}}', ','
                                 order by m) || ']' as items
        from item_plan where is_new::int = {plan_phase(phase)} group by k
    ),
    raw as (
        select 'product.viewed' as event_type, 'storefront' as event_source, t0 - 600000000 as t, 'order-' || k as session,
               customer_id as user_id, j, null as payload_override, 'storefront.session' as step, k as order_key
        from ordering join first_items using (k)
        union all
        select 'cart.item_added', 'storefront', t0 - 180000000, 'order-' || k, customer_id, j, null, 'storefront.session', k
        from ordering join first_items using (k)
        union all
        select 'order.created', 'order-service', t0, 'order-' || k, customer_id, null,
               '{{"order_id":"' || order_id || '","customer_id":"' || customer_id || '","status":"PENDING","order_ts":"'
               || ts_ms_text(t0) || '","subtotal":"' || money(subtotal) || '","discount_amount":"' || money(discount)
               || '","tax_amount":"' || money(tax) || '","shipping_amount":"' || money(shipping_cents)
               || '","total_amount":"' || money(total) || '","currency":"' || currency_of(country)
               || '","shipping_address":' || address || ',"items":' || items || '}}',
               'order.create', k
        from ordering join first_items using (k)
        union all
        select 'order.confirmed', 'order-service', t0 + 300000000, null, customer_id, null,
               '{{"order_id":"' || order_id || '","customer_id":"' || customer_id || '","status":"CONFIRMED","total_amount":"'
               || money(total) || '"}}', 'order.confirm', k
        from ordering where path in ('confirmed', 'shipped', 'delivered')
        union all
        select 'product.viewed', 'storefront', t, 'browse-' || b, null, hsh(b, 'product') % {scale.products}, null,
               'storefront.session', null
        from ({browse})
        union all
        select 'cart.item_added', 'storefront', t + 120000000, 'browse-' || b, null, hsh(b, 'product') % {scale.products},
               null, 'storefront.session', null
        from ({browse}) where hsh(b, 'carts') % 3 = 0
    ),
    typed as (
        select
            *,
            uid('event', coalesce(session, 'order-' || order_key) || '-' || event_type) as event_id,
            uid('correlation', coalesce(session, 'order-' || order_key)) as correlation_id,
            case when session is not null then uid('session', session) end as session_id,
            coalesce(payload_override,
                     {product} || case when event_type = 'cart.item_added' then ',"quantity":1' else '' end || '}}'
            ) as payload,
            '{{"runId":"bench-transform","step":"' || step || '"'
            || case when event_source = 'storefront' then ',"channel":"web"' else '' end || '}}' as metadata,
            cast(make_timestamp(t) as date) as object_day
        from (select r.*, pick({_list(CATEGORIES)}, hsh(j, 'category')) as category from raw r
              where {in_phase(scale, phase)})
    ),
    copies as (
        -- a service sometimes writes an event twice (a retried upload under another key)
        select *, false as is_retry from typed
        union all select *, true from typed where hsh(event_id, 'retry') % 1000 = 0
    ),
    placed as (
        select
            *,
            row_number() over (partition by object_day, is_retry order by t, event_id) - 1 as position
        from copies
    ),
    located as (
        select
            *,
            'raw/events/' || strftime(object_day, 'year=%Y/month=%m/day=%d/')
            || case when is_retry then 'retry-' || lpad((position // {OBJECT_LINES})::varchar, 6, '0')
                    else 'events-' || lpad((position // {OBJECT_LINES})::varchar, 6, '0') end
            || '-p{phase}.jsonl' as object_key,
            position % {OBJECT_LINES} + 1 as line_number,
            '{{"eventId":"' || event_id || '","eventType":"' || event_type || '","eventSource":"' || event_source
            || '","timestamp":"' || ts_ms_text(t) || '","version":"1.0","data":{{"payload":' || payload
            || ',"metadata":' || metadata || '}},"correlationId":"' || correlation_id || '","userId":'
            || coalesce('"' || user_id || '"', 'null') || ',"sessionId":' || coalesce('"' || session_id || '"', 'null')
            || ',"environment":"local","region":"us-east-1"}}' as raw_line,
            max(t) over (partition by object_day, is_retry, position // {OBJECT_LINES}) as object_end_t
        from placed
    ),
    events as (
        select
            object_key || '@' || md5(object_key) || ':' || line_number as bronze_id,
            'event' as row_kind,
            event_id, event_type, event_source,
            make_timestamp(t)::timestamptz as event_ts,
            '1.0' as version, correlation_id, user_id, session_id, payload, metadata,
            'platform' as envelope, 'local' as environment, 'us-east-1' as region, raw_line,
            object_key, md5(object_key) as etag, line_number::bigint as line_number,
            null::bigint as object_size, null::timestamptz as object_last_modified, null::bigint as lines_read,
            null::bigint as rows_ingested, null::bigint as lines_quarantined,
            null::timestamptz as superseded_at, null::varchar as superseded_by_etag,
            object_day, object_end_t
        from located
    ),
    objects as (
        select
            object_key || '@' || md5(object_key) as bronze_id, 'object' as row_kind,
            null, null, null, null::timestamptz, null, null, null, null, null, null, null, null, null, null,
            object_key, md5(object_key), null::bigint,
            sum(length(raw_line) + 1)::bigint, (object_day + interval 1 day)::timestamptz,
            count(*)::bigint, count(*)::bigint, 0::bigint,
            null::timestamptz, null::varchar, object_day, max(object_end_t)
        from located group by object_key, object_day
    )
    select
        * exclude (object_end_t),
        {_stamp(phase, loaded, 'object_end_t')} as ingested_at,
        'events/' || object_day::varchar || '#{phase + 1}' as ingest_batch_id
    from (select * from events union all select * from objects)
    order by object_day, object_key, line_number nulls first
    """


# ------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------
def _batches(conn, sql: str, schema: pa.Schema) -> pa.RecordBatchReader:
    reader = conn.sql(sql).to_arrow_reader(batch_size=BATCH_ROWS)
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in reader))


def _next_offset(path: str) -> int:
    from deltalake import DeltaTable

    import pyarrow.compute as pc

    offsets = DeltaTable(path).to_pyarrow_table(columns=["offset"]).column("offset")
    return 0 if len(offsets) == 0 else int(pc.max(offsets).as_py()) + 1


def write_bronze(lake_root: str, scale: Scale, phase: int) -> dict[str, int]:
    """Write phase 0 or 2 (a fresh bronze) or append phase 1 or 3 to it; returns rows written per table."""
    from deltalake import write_deltalake

    from pipelines.cdc.ingest import _BRONZE_WRITER
    from pipelines.lake import connect

    conn = connect()
    # leave memory to the rest of the machine; the plans spill if they must
    conn.execute("set memory_limit = '10GB'")
    conn.execute(MACROS)
    _plans(conn, scale, plan_phase(phase))
    _order_versions(conn)
    _item_versions(conn)
    _payment_and_shipment_versions(conn)
    _customer_versions(conn, scale, plan_phase(phase))
    _product_versions(conn, scale, plan_phase(phase))
    fresh = phase in (0, 2)

    written: dict[str, int] = {}
    for table, (versions, source_table, key) in CDC_TABLES.items():
        path = f"{lake_root}/bronze/{table}"
        first = 0 if fresh else _next_offset(path)
        reader = _batches(conn, _cdc_rows_sql(scale, versions, source_table, key, phase, first), BRONZE_CDC)
        count = RowCounter(reader)
        write_deltalake(path, count.reader(), mode="overwrite" if fresh else "append",
                        partition_by=["ingest_date"], writer_properties=_BRONZE_WRITER)
        written[table] = count.rows
    count = RowCounter(_batches(conn, _event_rows_sql(scale, phase), BRONZE_EVENTS))
    write_deltalake(f"{lake_root}/bronze/events", count.reader(), mode="overwrite" if fresh else "append",
                    partition_by=PARTITION_BY,
                    configuration={"delta.checkpointInterval": "10"} if fresh else None)
    written["events"] = count.rows
    conn.close()
    return written


class RowCounter:
    """Passes record batches through, counting their rows (write_deltalake does not say how many it wrote)."""

    def __init__(self, reader: pa.RecordBatchReader):
        self._source = reader
        self.rows = 0

    def reader(self) -> pa.RecordBatchReader:
        def batches():
            for batch in self._source:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(self._source.schema, batches())
