-- Customers as SCD2: one row per version of their details, valid_from/valid_to when it was in force in
-- the source. Soft-deleted customers keep their rows with deleted_at set.
-- Partitioned like silver's history by the UTC day a version began (macros/cdc.sql).
{{ config(incremental_strategy='merge', unique_key=['valid_from_date', 'customer_version_key'], partition_by=['valid_from_date']) }}
with

versions as (

    -- incremental: the versions silver rewrote since the last run (new ones, and old ones it closed)
    {{ rewritten_since_last_run(ref('int_customers_history')) }}

),

final as (

    select
        history_key as customer_version_key,
        customer_id,
        email,
        first_name,
        last_name,
        phone,
        country,
        city,
        marketing_opt_in,
        registered_at,
        deleted_at,
        deleted_at is not null as is_deleted,
        row_version,
        valid_from,
        valid_from_date,
        valid_to,
        is_current,
        processed_at
    from versions

)

select * from final
