{#- The shop's revenue rule, in one place: an order is revenue once paid (CONFIRMED, SHIPPED, DELIVERED)
    and not soft-deleted; PENDING is unpaid, CANCELLED never counts. -#}
{% macro is_revenue_order(status='status', deleted_at='deleted_at') -%}
  ({{ status }} in ('CONFIRMED', 'SHIPPED', 'DELIVERED') and {{ deleted_at }} is null)
{%- endmacro %}
