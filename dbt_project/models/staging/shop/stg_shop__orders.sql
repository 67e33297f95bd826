-- One typed row per change event of public.orders (inserts, updates, deletes, snapshot reads).
with

source as (

    select * from {{ source('shop', 'cdc_orders') }}
    where kind = 'change' and op in ('c', 'u', 'd', 'r')

),

renamed as (

    select
        cast(json_extract_string(coalesce(after, before), '$.order_id') as uuid) as order_id,
        cast(json_extract_string(coalesce(after, before), '$.customer_id') as uuid) as customer_id,
        json_extract_string(after, '$.status') as status,
        cast(json_extract_string(after, '$.order_ts') as timestamptz) as order_ts,
        {{ json_money('after', 'subtotal') }} as subtotal,
        {{ json_money('after', 'discount_amount') }} as discount_amount,
        {{ json_money('after', 'tax_amount') }} as tax_amount,
        {{ json_money('after', 'shipping_amount') }} as shipping_amount,
        {{ json_money('after', 'total_amount') }} as total_amount,
        json_extract_string(after, '$.currency') as currency,
        cast(json_extract_string(after, '$.created_at') as timestamptz) as created_at,
        cast(json_extract_string(after, '$.updated_at') as timestamptz) as updated_at,
        cast(json_extract_string(after, '$.version') as integer) as row_version,
        cast(json_extract_string(after, '$.deleted_at') as timestamptz) as deleted_at,
        op as change_op,
        op = 'd' as is_delete,
        try_cast(lsn as ubigint) as lsn,
        tx_id,
        source_ts,
        "partition" as kafka_partition,
        "offset" as kafka_offset,
        bronze_id as source_bronze_id,
        ingested_at
    from source

)

select * from renamed
