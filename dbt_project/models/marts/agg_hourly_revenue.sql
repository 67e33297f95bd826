-- Revenue per UTC hour of order placement. Revenue counts orders currently CONFIRMED, SHIPPED or
-- DELIVERED and not soft-deleted (see fct_orders); hours without such orders have no row.
-- Incremental: recomputes the hours whose orders changed since the last run (and the run's partition
-- days); an hour left without revenue orders loses its row (macros/revenue.sql).
-- depends_on: {{ ref('int_orders_history') }}
{{ config(incremental_strategy='merge', unique_key='order_hour', delete_flag='is_removed') }}
{{ revenue_per_period("date_trunc('hour', order_ts)", 'order_hour', ['cast(periods.period as date) as order_date']) }}
