-- Storefront funnel per UTC day: sessions that viewed a product, then added to cart, then ordered.
-- A session belongs to the day of its first product view and counts as converted whatever day its cart
-- adds and order came (a session near midnight orders the next day), so each stage is a subset of the one
-- before. Events come from S3 (stg_events__events, one per eventId); events without a session are
-- not part of the funnel.
with

events as (

    select * from {{ ref('stg_events__events') }}
    where session_id is not null
      and event_type in ('product.viewed', 'cart.item_added', 'order.created')

),

sessions as (

    select
        session_id,
        cast(min(event_ts) filter (where event_type = 'product.viewed') as date) as funnel_date,
        count(*) filter (where event_type = 'product.viewed') as product_views,
        count(*) filter (where event_type = 'cart.item_added') as cart_adds,
        count(*) filter (where event_type = 'order.created') as orders
    from events
    group by 1
    having count(*) filter (where event_type = 'product.viewed') > 0

),

daily as (

    select
        funnel_date,
        count(*) as viewing_sessions,
        count(*) filter (where cart_adds > 0) as carting_sessions,
        count(*) filter (where orders > 0) as ordering_sessions,
        sum(product_views) as product_views,
        sum(cart_adds) as cart_adds,
        sum(orders) as orders
    from sessions
    group by 1

),

final as (

    select
        funnel_date,
        viewing_sessions,
        carting_sessions,
        ordering_sessions,
        cast(product_views as bigint) as product_views,
        cast(cart_adds as bigint) as cart_adds,
        cast(orders as bigint) as orders,
        {{ rate('carting_sessions', 'viewing_sessions') }} as view_to_cart_rate,
        {{ rate('ordering_sessions', 'carting_sessions') }} as cart_to_order_rate,
        {{ rate('ordering_sessions', 'viewing_sessions') }} as view_to_order_rate
    from daily

)

select * from final
