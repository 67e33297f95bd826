-- Revenue per UTC hour of order placement. Revenue counts orders currently CONFIRMED, SHIPPED or
-- DELIVERED and not soft-deleted (see fct_orders); hours without such orders have no row.
with

orders as (

    select * from {{ ref('int_orders_current') }}
    where {{ is_revenue_order() }}

),

hourly as (

    select
        date_trunc('hour', order_ts) as order_hour,
        count(*) as order_count,
        sum(total_amount) as total_revenue,
        count(distinct customer_id) as unique_customers
    from orders
    group by 1

),

final as (

    select
        order_hour,
        cast(order_hour as date) as order_date,
        order_count,
        cast(total_revenue as decimal(18, 2)) as total_revenue,
        {{ money_avg('total_revenue', 'order_count') }} as avg_order_value,
        unique_customers
    from hourly

)

select * from final
