-- Customers as SCD2: one row per version of their details, valid_from/valid_to when it was in force in
-- the source. Soft-deleted customers keep their rows with deleted_at set.
with

versions as (

    select * from {{ ref('int_customers_history') }}

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
        valid_to,
        is_current
    from versions

)

select * from final
