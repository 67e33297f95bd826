-- The baseline of bench/transform.py: the gold tables of dbt_project/models/marts, computed by hand in
-- one DuckDB script from the same bronze Delta tables, with the same semantics (latest version per key
-- by LSN then offset, redelivered duplicates dropped, deletes and truncates applied, TOAST placeholders
-- filled, SCD2 validity; revenue = CONFIRMED/SHIPPED/DELIVERED and not soft-deleted). What it leaves
-- out is what gold does not need: no silver tables written, no quality or lineage columns, only the columns
-- gold shows read from the row images (and TOAST-filled), no inventory/payments/shipments (no mart reads
-- them), and each entity's change stream is ordered once for both its current state and its history.
--
-- {bronze} is the bronze root; {dim_date_start}/{dim_date_end} are dbt_project.yml's vars. The harness
-- writes every `gold_<table>` view to Delta.

-- the CDC steps every entity shares ---------------------------------------------------------------------
-- change events of one bronze table, with the row image every op carries (a delete's is `before`)
create macro change_events(path) as table
    select
        op, cast(lsn as ubigint) as lsn, "offset", source_ts, coalesce(unavailable_columns, []) as unavailable_columns,
        coalesce(after, before) as doc
    from delta_scan(path)
    where kind = 'change' and op in ('c', 'u', 'd', 'r', 't');

-- every change of every key once (a redelivery repeats key, LSN and op), with the key's next change, the
-- first truncate after it, and when the version ended: at the next change or that truncate, whichever
-- came first; `changes` names a view of typed changes with a `key_id` column
create macro versions(changes) as table
    with
    deduplicated as (
        select * from query_table(changes)
        where op <> 't'
        qualify row_number() over (partition by key_id, lsn, op order by "offset") = 1
    ),
    ordered as (
        select *, lead(source_ts) over next_change as next_change_at, lead(lsn) over next_change as next_change_lsn
        from deduplicated
        window next_change as (partition by key_id order by lsn, "offset")
    ),
    truncates as (
        select lsn as truncate_lsn, source_ts as truncated_at from query_table(changes) where op = 't'
    )
    select
        ordered.*, truncate_lsn, truncated_at,
        case when truncate_lsn is not null and (next_change_lsn is null or truncate_lsn < next_change_lsn)
             then truncated_at else next_change_at end as valid_to
    from ordered asof left join truncates on ordered.lsn < truncates.truncate_lsn;

-- a TOASTed value Debezium did not send again: the key's latest value that was sent
create macro toast_filled(value, name, unavailable, key_id, lsn, kafka_offset) as
    case when list_contains(unavailable, name)
         then last_value(case when not list_contains(unavailable, name) then value end ignore nulls)
              over (partition by key_id order by lsn, kafka_offset rows between unbounded preceding and 1 preceding)
         else value end;

-- the entities gold reads, with the columns it shows ------------------------------------------------
create temp view order_changes as
select
    cast(v[1] as uuid) as order_id, order_id as key_id, cast(v[2] as uuid) as customer_id, v[3] as status,
    cast(v[4] as timestamptz) as order_ts, cast(v[5] as decimal(12, 2)) as subtotal,
    cast(v[6] as decimal(12, 2)) as discount_amount, cast(v[7] as decimal(12, 2)) as tax_amount,
    cast(v[8] as decimal(12, 2)) as shipping_amount, cast(v[9] as decimal(12, 2)) as total_amount,
    v[10] as currency, cast(v[11] as integer) as row_version, cast(v[12] as timestamptz) as deleted_at,
    op, lsn, "offset", source_ts, unavailable_columns
from (
    select *, json_extract_string(doc, ['$.order_id', '$.customer_id', '$.status', '$.order_ts', '$.subtotal',
        '$.discount_amount', '$.tax_amount', '$.shipping_amount', '$.total_amount', '$.currency', '$.version',
        '$.deleted_at']) as v
    from change_events('{bronze}/cdc_orders')
);

create temp table order_versions as
select * replace (
    toast_filled(status, 'status', unavailable_columns, key_id, lsn, "offset") as status,
    toast_filled(currency, 'currency', unavailable_columns, key_id, lsn, "offset") as currency
)
from versions('order_changes');

create temp view orders_current as
select * from order_versions where next_change_lsn is null and truncate_lsn is null and op <> 'd';

create temp view item_changes as
select
    cast(v[1] as uuid) as order_item_id, order_item_id as key_id, cast(v[2] as uuid) as order_id,
    cast(v[3] as uuid) as product_id, cast(v[4] as integer) as quantity, cast(v[5] as decimal(12, 2)) as unit_price,
    cast(v[6] as decimal(12, 2)) as discount_amount, cast(v[7] as decimal(12, 2)) as line_total,
    op, lsn, "offset", source_ts, unavailable_columns
from (
    select *, json_extract_string(doc, ['$.order_item_id', '$.order_id', '$.product_id', '$.quantity',
        '$.unit_price', '$.discount_amount', '$.line_total']) as v
    from change_events('{bronze}/cdc_order_items')
);

create temp view items_current as
select * from versions('item_changes') where next_change_lsn is null and truncate_lsn is null and op <> 'd';

create temp view customer_changes as
select
    cast(v[1] as uuid) as customer_id, customer_id as key_id, v[2] as email, v[3] as first_name,
    v[4] as last_name, v[5] as phone, v[6] as country, v[7] as city, cast(v[8] as boolean) as marketing_opt_in,
    cast(v[9] as timestamptz) as registered_at, cast(v[10] as integer) as row_version,
    cast(v[11] as timestamptz) as deleted_at,
    op, lsn, "offset", source_ts, unavailable_columns
from (
    select *, json_extract_string(doc, ['$.customer_id', '$.email', '$.first_name', '$.last_name', '$.phone',
        '$.country', '$.city', '$.marketing_opt_in', '$.registered_at', '$.version', '$.deleted_at']) as v
    from change_events('{bronze}/cdc_customers')
);

create temp table customer_versions as
select * replace (
    toast_filled(email, 'email', unavailable_columns, key_id, lsn, "offset") as email,
    toast_filled(first_name, 'first_name', unavailable_columns, key_id, lsn, "offset") as first_name,
    toast_filled(last_name, 'last_name', unavailable_columns, key_id, lsn, "offset") as last_name,
    toast_filled(phone, 'phone', unavailable_columns, key_id, lsn, "offset") as phone,
    toast_filled(country, 'country', unavailable_columns, key_id, lsn, "offset") as country,
    toast_filled(city, 'city', unavailable_columns, key_id, lsn, "offset") as city
)
from versions('customer_changes');

create temp view product_changes as
select
    cast(v[1] as uuid) as product_id, product_id as key_id, v[2] as sku, v[3] as name, v[4] as category,
    v[5] as brand, cast(v[6] as decimal(12, 2)) as price, cast(v[7] as decimal(12, 2)) as cost,
    cast(v[8] as boolean) as is_active, cast(v[9] as json) as attributes, cast(v[10] as timestamptz) as created_at,
    cast(v[11] as timestamptz) as updated_at, cast(v[12] as timestamptz) as deleted_at,
    op, lsn, "offset", source_ts, unavailable_columns
from (
    select *, json_extract_string(doc, ['$.product_id', '$.sku', '$.name', '$.category', '$.brand', '$.price',
        '$.cost', '$.is_active', '$.attributes', '$.created_at', '$.updated_at', '$.deleted_at']) as v
    from change_events('{bronze}/cdc_products')
);

create temp view products_current as
select * from (
    select * replace (
        toast_filled(sku, 'sku', unavailable_columns, key_id, lsn, "offset") as sku,
        toast_filled(name, 'name', unavailable_columns, key_id, lsn, "offset") as name,
        toast_filled(category, 'category', unavailable_columns, key_id, lsn, "offset") as category,
        toast_filled(brand, 'brand', unavailable_columns, key_id, lsn, "offset") as brand,
        toast_filled(attributes, 'attributes', unavailable_columns, key_id, lsn, "offset") as attributes
    )
    from versions('product_changes')
)
where next_change_lsn is null and truncate_lsn is null and op <> 'd';

-- events -----------------------------------------------------------------------------------------------
create temp table funnel_events as
select event_type, event_ts, cast(session_id as uuid) as session_id
from delta_scan('{bronze}/events')
where row_kind = 'event' and superseded_at is null
qualify row_number() over (partition by lower(event_id) order by ingested_at, bronze_id) = 1;

-- gold -------------------------------------------------------------------------------------------------
create temp view gold_fct_orders as
select
    order_id::varchar || '@' || lsn::varchar as order_version_key,
    order_id, customer_id, status, order_ts, cast(order_ts as date) as order_date,
    subtotal, discount_amount, tax_amount, shipping_amount, total_amount, currency,
    (status in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and deleted_at is null) as is_revenue,
    deleted_at, row_version, source_ts as valid_from, cast(timezone('UTC', source_ts) as date) as valid_from_date,
    valid_to, valid_to is null as is_current
from order_versions
where op <> 'd';

create temp view gold_fct_order_items as
select
    i.order_item_id, i.order_id, i.product_id, o.customer_id, o.order_ts, cast(o.order_ts as date) as order_date,
    o.status as order_status, i.quantity, i.unit_price, i.discount_amount, i.line_total,
    coalesce(o.status in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and o.deleted_at is null, false) as is_revenue
from items_current i
left join orders_current o on o.order_id = i.order_id;

create temp view gold_dim_customers as
select
    customer_id::varchar || '@' || lsn::varchar as customer_version_key,
    customer_id, email, first_name, last_name, phone, country, city, marketing_opt_in, registered_at,
    deleted_at, deleted_at is not null as is_deleted, row_version,
    source_ts as valid_from, cast(timezone('UTC', source_ts) as date) as valid_from_date, valid_to,
    valid_to is null as is_current
from customer_versions
where op <> 'd';

create temp view gold_dim_products as
select
    product_id, sku, name, category, brand, price, cost, price - cost as unit_margin, is_active, attributes,
    created_at, updated_at, deleted_at
from products_current;

create temp view gold_dim_date as
select
    date_day, year(date_day) as year, quarter(date_day) as quarter, month(date_day) as month,
    monthname(date_day) as month_name, day(date_day) as day_of_month, isodow(date_day) as day_of_week,
    dayname(date_day) as day_name, weekofyear(date_day) as iso_week, isodow(date_day) >= 6 as is_weekend,
    cast(date_trunc('month', date_day) as date) as month_start
from (
    select cast(day as date) as date_day
    from range(date '{dim_date_start}', date '{dim_date_end}' + interval 1 day, interval 1 day) as spine(day)
);

-- exact mean of money, rounded half away from zero to cents (DuckDB divides DECIMALs as DOUBLE)
create macro money_avg(total, n) as
    case when n > 0 then
        (sign(total) * ((abs(total * 100)::hugeint * 2 + n) // (2 * n)))::decimal(38, 0)::decimal(14, 2) / 100
    end::decimal(12, 2);

create temp view gold_agg_daily_sales as
select
    order_date, order_count, cast(total_revenue as decimal(18, 2)) as total_revenue,
    money_avg(total_revenue, order_count) as avg_order_value, unique_customers
from (
    select cast(order_ts as date) as order_date, count(*) as order_count, sum(total_amount) as total_revenue,
           count(distinct customer_id) as unique_customers
    from orders_current
    where status in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and deleted_at is null
    group by 1
);

create temp view gold_agg_hourly_revenue as
select
    order_hour, cast(order_hour as date) as order_date, order_count,
    cast(total_revenue as decimal(18, 2)) as total_revenue,
    money_avg(total_revenue, order_count) as avg_order_value, unique_customers
from (
    select date_trunc('hour', order_ts) as order_hour, count(*) as order_count, sum(total_amount) as total_revenue,
           count(distinct customer_id) as unique_customers
    from orders_current
    where status in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and deleted_at is null
    group by 1
);

create temp view gold_customer_features as
with
reference as (select max(order_ts) as as_of from orders_current),
per_customer as (
    select
        customer_id,
        count(*) filter (where order_ts > as_of - interval 30 days) as order_count_last_30_days,
        coalesce(sum(total_amount) filter (where order_ts > as_of - interval 30 days), 0) as total_spent_last_30_days,
        count(*) as lifetime_order_count,
        sum(total_amount) as lifetime_value,
        min(order_ts) as first_order_at,
        max(order_ts) as last_order_at
    from orders_current cross join reference
    where status in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and deleted_at is null and order_ts <= as_of
    group by 1
)
select
    c.customer_id,
    coalesce(p.order_count_last_30_days, 0) as order_count_last_30_days,
    cast(coalesce(p.total_spent_last_30_days, 0) as decimal(18, 2)) as total_spent_last_30_days,
    money_avg(p.lifetime_value, p.lifetime_order_count) as avg_order_value,
    coalesce(p.lifetime_order_count, 0) as lifetime_order_count,
    cast(coalesce(p.lifetime_value, 0) as decimal(18, 2)) as lifetime_value,
    case
        when p.lifetime_order_count is null then 'no_orders'
        when p.lifetime_value < 100 then 'low_value'
        when p.lifetime_value < 500 then 'mid_value'
        else 'high_value'
    end as lifetime_segment,
    p.first_order_at, p.last_order_at, r.as_of as features_updated_at
from customer_versions c
cross join reference r
left join per_customer p on p.customer_id = c.customer_id
where c.next_change_lsn is null and c.truncate_lsn is null and c.op <> 'd';

-- count / total as an exact DECIMAL(7, 4) share, rounded half up
create macro rate(n, total) as
    case when total > 0 then
        cast((cast(n as hugeint) * 20000 + total) // (2 * total) as decimal(38, 0))::decimal(12, 0) / 10000
    end::decimal(7, 4);

create temp view gold_agg_daily_funnel as
with sessions as (
    select
        session_id,
        cast(min(event_ts) filter (where event_type = 'product.viewed') as date) as funnel_date,
        count(*) filter (where event_type = 'product.viewed') as product_views,
        count(*) filter (where event_type = 'cart.item_added') as cart_adds,
        count(*) filter (where event_type = 'order.created') as orders
    from funnel_events
    where session_id is not null and event_type in ('product.viewed', 'cart.item_added', 'order.created')
    group by 1
    having count(*) filter (where event_type = 'product.viewed') > 0
),
daily as (
    select
        funnel_date, count(*) as viewing_sessions, count(*) filter (where cart_adds > 0) as carting_sessions,
        count(*) filter (where orders > 0) as ordering_sessions, sum(product_views) as product_views,
        sum(cart_adds) as cart_adds, sum(orders) as orders
    from sessions
    group by 1
)
select
    funnel_date, viewing_sessions, carting_sessions, ordering_sessions,
    cast(product_views as bigint) as product_views, cast(cart_adds as bigint) as cart_adds,
    cast(orders as bigint) as orders,
    rate(carting_sessions, viewing_sessions) as view_to_cart_rate,
    rate(ordering_sessions, carting_sessions) as cart_to_order_rate,
    rate(ordering_sessions, viewing_sessions) as view_to_order_rate
from daily;
