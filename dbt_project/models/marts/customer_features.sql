-- Features per customer for analysts and models, over revenue orders only (CONFIRMED, SHIPPED, DELIVERED,
-- not soft-deleted; PENDING and CANCELLED excluded).
-- "Last 30 days" is relative to a reference instant, not the wall clock, so a rebuild gives the same
-- answer: var features_as_of if set, else the latest order_ts of any order now in the source. The window
-- is (reference - 30 days, reference].
with

customers as (

    select * from {{ ref('int_customers_current') }}

),

orders as (

    select * from {{ ref('int_orders_current') }}

),

reference as (

    {%- if var('features_as_of', none) %}
    select cast('{{ var("features_as_of") }}' as timestamptz) as as_of
    {%- else %}
    select max(order_ts) as as_of from orders
    {%- endif %}

),

revenue_orders as (

    select orders.customer_id, orders.order_ts, orders.total_amount, reference.as_of
    from orders
    cross join reference
    where {{ is_revenue_order('orders.status', 'orders.deleted_at') }}
      and orders.order_ts <= reference.as_of

),

per_customer as (

    select
        customer_id,
        count(*) filter (where order_ts > as_of - interval 30 days) as order_count_last_30_days,
        coalesce(sum(total_amount) filter (where order_ts > as_of - interval 30 days), 0) as total_spent_last_30_days,
        count(*) as lifetime_order_count,
        sum(total_amount) as lifetime_value,
        min(order_ts) as first_order_at,
        max(order_ts) as last_order_at
    from revenue_orders
    group by 1

),

final as (

    select
        customers.customer_id,
        coalesce(per_customer.order_count_last_30_days, 0) as order_count_last_30_days,
        cast(coalesce(per_customer.total_spent_last_30_days, 0) as decimal(18, 2)) as total_spent_last_30_days,
        {{ money_avg('per_customer.lifetime_value', 'per_customer.lifetime_order_count') }} as avg_order_value,
        coalesce(per_customer.lifetime_order_count, 0) as lifetime_order_count,
        cast(coalesce(per_customer.lifetime_value, 0) as decimal(18, 2)) as lifetime_value,
        case
            when per_customer.lifetime_order_count is null then 'no_orders'
            when per_customer.lifetime_value < 100 then 'low_value'
            when per_customer.lifetime_value < 500 then 'mid_value'
            else 'high_value'
        end as lifetime_segment,
        per_customer.first_order_at,
        per_customer.last_order_at,
        reference.as_of as features_updated_at
    from customers
    cross join reference
    left join per_customer on per_customer.customer_id = customers.customer_id

)

select * from final
