-- One row per version of every order (SCD2): amounts, status and whether the version counts as revenue.
-- Revenue counts CONFIRMED, SHIPPED and DELIVERED orders that are not soft-deleted; PENDING (unpaid) and
-- CANCELLED orders never do. Hard-deleted orders keep their closed versions; none is current.
-- Partitioned like silver's history by the UTC day a version began (macros/cdc.sql).
{{ config(incremental_strategy='merge', unique_key=['valid_from_date', 'order_version_key'], partition_by=['valid_from_date']) }}
with

versions as (

    -- incremental: the versions silver rewrote since the last run (new ones, and old ones it closed)
    {{ rewritten_since_last_run(ref('int_orders_history')) }}

),

final as (

    select
        history_key as order_version_key,
        order_id,
        customer_id,
        status,
        order_ts,
        cast(order_ts as date) as order_date,
        subtotal,
        discount_amount,
        tax_amount,
        shipping_amount,
        total_amount,
        currency,
        {{ is_revenue_order() }} as is_revenue,
        deleted_at,
        row_version,
        valid_from,
        valid_from_date,
        valid_to,
        is_current,
        processed_at
    from versions

)

select * from final
