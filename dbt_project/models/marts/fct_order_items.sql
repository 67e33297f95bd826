-- One row per current order line, with its order's customer, time and status. Lines of hard-deleted
-- orders are deleted with them in the source. is_revenue follows the order (see fct_orders).
-- Incremental: the lines silver changed since the last run (a deleted line is closed in its history)
-- and the lines of orders that changed; lines gone from silver are deleted.
-- depends_on: {{ ref('int_order_items_history') }}
-- depends_on: {{ ref('int_orders_history') }}
{{ config(incremental_strategy='merge', unique_key='order_item_id', delete_flag='is_removed') }}
{%- if is_incremental() %}
  {%- set changed_lines -%}
    select order_item_id, order_id from {{ ref('int_order_items_history') }} where processed_at > {{ watermark('processed_at') }}
  {%- endset -%}
  {%- set changed_orders -%}
    select order_id from {{ ref('int_orders_history') }} where processed_at > {{ watermark('processed_at') }}
  {%- endset -%}
  {#- the days of current state that hold the lines and orders joined below, found by narrow scans, so
      that the joins read only those partitions -#}
  {%- set item_days = partition_days(ref('int_order_items_current'), 'last_changed_date',
        'order_item_id in (select order_item_id from (' ~ changed_lines ~ ')) or order_id in (' ~ changed_orders ~ ')') -%}
  {%- set order_days = partition_days(ref('int_orders_current'), 'last_changed_date',
        'order_id in (' ~ changed_orders ~ ') or order_id in (select order_id from (' ~ changed_lines ~ '))') -%}
{%- endif %}
with

items as (

    select * from {{ ref('int_order_items_current') }}
    {%- if is_incremental() %}
    where last_changed_date in ({{ item_days }})
    {%- endif %}

),

orders as (

    select * from {{ ref('int_orders_current') }}
    {%- if is_incremental() %}
    where last_changed_date in ({{ order_days }})
    {%- endif %}

),

lines as (

    {%- if is_incremental() %}
    select order_item_id from ({{ changed_lines }})
    union
    select items.order_item_id from items
    semi join ({{ changed_orders }}) as changed_orders using (order_id)
    {%- else %}
    select order_item_id from items
    {%- endif %}

),

final as (

    select
        lines.order_item_id,
        items.order_id,
        items.product_id,
        orders.customer_id,
        orders.order_ts,
        cast(orders.order_ts as date) as order_date,
        orders.status as order_status,
        items.quantity,
        items.unit_price,
        items.discount_amount,
        items.line_total,
        coalesce({{ is_revenue_order('orders.status', 'orders.deleted_at') }}, false) as is_revenue,
        greatest(items.processed_at, orders.processed_at) as processed_at,
        items.order_item_id is null as is_removed
    from lines
    left join items on items.order_item_id = lines.order_item_id
    left join orders on orders.order_id = items.order_id

)

select * from final
