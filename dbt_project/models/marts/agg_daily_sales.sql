-- Daily sales per UTC calendar day of order placement. Revenue counts orders that are CONFIRMED,
-- SHIPPED or DELIVERED now (PENDING is not yet revenue, CANCELLED never is) and not soft-deleted.
-- Incremental: recomputes the days whose orders changed since the last run (and the run's partition
-- days); a day left without revenue orders loses its row.
-- depends_on: {{ ref('int_orders_history') }}
{{ config(incremental_strategy='merge', unique_key='order_date', delete_flag='is_removed') }}
with

{% if is_incremental() -%}
days as (

    {{ changed_order_periods('cast(order_ts as date)') }}

),

{% endif -%}
orders as (

    select * from {{ ref('int_orders_current') }}
    where {{ is_revenue_order() }}
    {%- if is_incremental() %}
      and cast(order_ts as date) in (select period from days)
    {%- endif %}

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

{% if not is_incremental() -%}
days as (

    -- a full build: every day with revenue orders
    select order_date as period from daily

),

{% endif -%}
final as (

    select
        days.period as order_date,
        coalesce(daily.order_count, 0) as order_count,
        cast(coalesce(daily.total_revenue, 0) as decimal(18, 2)) as total_revenue,
        {{ money_avg('daily.total_revenue', 'daily.order_count') }} as avg_order_value,
        coalesce(daily.unique_customers, 0) as unique_customers,
        current_timestamp as processed_at,
        daily.order_date is null as is_removed
    from days
    left join daily on daily.order_date = days.period

)

select * from final
