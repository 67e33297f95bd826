-- One row per version of every order (SCD2): amounts, status and whether the version counts as revenue.
-- Revenue counts CONFIRMED, SHIPPED and DELIVERED orders that are not soft-deleted; PENDING (unpaid) and
-- CANCELLED orders never do. Hard-deleted orders keep their closed versions; none is current.
{{ config(incremental_strategy='merge', unique_key='order_version_key', partition_by=['is_current']) }}
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
        valid_to,
        is_current,
        processed_at
    from versions

)

select * from final
