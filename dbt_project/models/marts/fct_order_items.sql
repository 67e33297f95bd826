-- One row per current order line, with its order's customer, time and status. Lines of hard-deleted
-- orders are deleted with them in the source. is_revenue follows the order (see fct_orders).
with

items as (

    select * from {{ ref('int_order_items_current') }}

),

orders as (

    select * from {{ ref('int_orders_current') }}

),

final as (

    select
        items.order_item_id,
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
        coalesce({{ is_revenue_order('orders.status', 'orders.deleted_at') }}, false) as is_revenue
    from items
    left join orders on orders.order_id = items.order_id

)

select * from final
