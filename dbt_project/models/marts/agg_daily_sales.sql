-- Daily sales per UTC calendar day of order placement. Revenue counts orders that are CONFIRMED,
-- SHIPPED or DELIVERED now (PENDING is not yet revenue, CANCELLED never is) and not soft-deleted.
-- Incremental: recomputes the days whose orders changed since the last run (and the run's partition
-- days); a day left without revenue orders loses its row (macros/revenue.sql).
-- depends_on: {{ ref('int_orders_history') }}
{{ config(incremental_strategy='merge', unique_key='order_date', delete_flag='is_removed') }}
{{ revenue_per_period('cast(order_ts as date)', 'order_date') }}
