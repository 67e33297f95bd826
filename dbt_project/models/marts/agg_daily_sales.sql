-- Daily sales per UTC calendar day of order placement. Revenue counts orders that are CONFIRMED,
-- SHIPPED or DELIVERED now (PENDING is not yet revenue, CANCELLED never is) and not soft-deleted.
with

orders as (

    select * from {{ ref('int_orders_current') }}
    where {{ is_revenue_order() }}

),

daily as (

    select
        cast(order_ts as date) as order_date,
        count(*) as order_count,
        sum(total_amount) as total_revenue,
        count(distinct customer_id) as unique_customers
    from orders
    group by 1

),

final as (

    select
        order_date,
        order_count,
        cast(total_revenue as decimal(18, 2)) as total_revenue,
        {{ money_avg('total_revenue', 'order_count') }} as avg_order_value,
        unique_customers
    from daily

)

select * from final
