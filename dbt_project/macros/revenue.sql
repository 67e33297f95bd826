{#- The shop's revenue rule, in one place: an order is revenue once paid (CONFIRMED, SHIPPED, DELIVERED)
    and not soft-deleted; PENDING is unpaid, CANCELLED never counts. -#}
{% macro is_revenue_order(status='status', deleted_at='deleted_at') -%}
  ({{ status }} in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and {{ deleted_at }} is null)
{%- endmacro %}


{#- Revenue orders of int_orders_current per period (`period`: an expression of order_ts), one row per
    period as `name`. Incremental runs recompute the periods whose orders changed (changed_order_periods)
    and flag the ones left without revenue orders for deletion (delete_flag='is_removed'). -#}
{% macro revenue_per_period(period, name, extra_columns=[]) %}
with

{% if is_incremental() -%}
periods as (

    {{ changed_order_periods(period) }}

),

{% endif -%}
orders as (

    select * from {{ ref('int_orders_current') }}
    where {{ is_revenue_order() }}
    {%- if is_incremental() %}
      and {{ period }} in (select period from periods)
    {%- endif %}

),

per_period as (

    select
        {{ period }} as period,
        count(*) as order_count,
        sum(total_amount) as total_revenue,
        count(distinct customer_id) as unique_customers
    from orders
    group by 1

),

{% if not is_incremental() -%}
periods as (

    -- a full build: every period with revenue orders
    select period from per_period

),

{% endif -%}
final as (

    select
        periods.period as {{ name }},
        {%- for column in extra_columns %}
        {{ column }},
        {%- endfor %}
        coalesce(per_period.order_count, 0) as order_count,
        cast(coalesce(per_period.total_revenue, 0) as decimal(18, 2)) as total_revenue,
        {{ money_avg('per_period.total_revenue', 'per_period.order_count') }} as avg_order_value,
        coalesce(per_period.unique_customers, 0) as unique_customers,
        current_timestamp as processed_at,
        per_period.period is null as is_removed
    from periods
    left join per_period on per_period.period = periods.period

)

select * from final
{% endmacro %}
