-- Current state of each order: its latest change by (LSN, offset); orders whose latest change is a
-- delete are gone. Redelivered duplicates share the LSN and collapse into one.
with

changes as (

    select * from {{ ref('stg_shop__orders') }}

),

latest as (

    select *
    from changes
    qualify row_number() over (
        partition by order_id order by lsn desc nulls last, kafka_offset desc
    ) = 1

),

final as (

    select
        order_id,
        customer_id,
        status,
        order_ts,
        subtotal,
        discount_amount,
        tax_amount,
        shipping_amount,
        total_amount,
        currency,
        created_at,
        updated_at,
        row_version,
        deleted_at,
        source_bronze_id,
        current_timestamp as processed_at,
        '{{ var("processing_version") }}' as processing_version
    from latest
    where not is_delete

)

select * from final
