-- Products as they are now in the catalog (SCD1), with their margin.
with

products as (

    select * from {{ ref('int_products_current') }}

),

final as (

    select
        product_id,
        sku,
        name,
        category,
        brand,
        price,
        cost,
        price - cost as unit_margin,
        is_active,
        attributes,
        created_at,
        updated_at,
        deleted_at
    from products

)

select * from final
