-- Revenue per UTC hour of order placement. Revenue counts orders currently CONFIRMED, SHIPPED or
-- DELIVERED and not soft-deleted (see fct_orders); hours without such orders have no row.
-- Incremental: recomputes the hours whose orders changed since the last run (and the run's partition
-- days); an hour left without revenue orders loses its row.
-- depends_on: {{ ref('int_orders_history') }}
{{ config(incremental_strategy='merge', unique_key='order_hour', delete_flag='is_removed') }}
with

{% if is_incremental() -%}
hours as (

    {{ changed_order_periods("date_trunc('hour', order_ts)") }}

),

{% endif -%}
orders as (

    select * from {{ ref('int_orders_current') }}
    where {{ is_revenue_order() }}
    {%- if is_incremental() %}
      and date_trunc('hour', order_ts) in (select period from hours)
    {%- endif %}

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

{% if not is_incremental() -%}
hours as (

    -- a full build: every hour with revenue orders
    select order_hour as period from hourly

),

{% endif -%}
final as (

    select
        hours.period as order_hour,
        cast(hours.period as date) as order_date,
        coalesce(hourly.order_count, 0) as order_count,
        cast(coalesce(hourly.total_revenue, 0) as decimal(18, 2)) as total_revenue,
        {{ money_avg('hourly.total_revenue', 'hourly.order_count') }} as avg_order_value,
        coalesce(hourly.unique_customers, 0) as unique_customers,
        current_timestamp as processed_at,
        hourly.order_hour is null as is_removed
    from hours
    left join hourly on hourly.order_hour = hours.period

)

select * from final
