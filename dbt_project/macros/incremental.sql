{#-
  Incremental runs read only what changed since the model's last run. The watermark is the newest value
  of a column the model itself stored: rows upstream with a later value are new. Deleted rows leave the
  table, so a watermark may step back: the rows behind it are processed again, which changes nothing.
-#}
{% macro watermark(column) -%}
  (select coalesce(max({{ column }}), '-infinity'::timestamptz) from {{ this }})
{%- endmacro %}


{#- Order periods (e.g. date_trunc('day', order_ts)) whose figures may have changed since this model's
    last run: those of every order version silver rewrote since then (new orders, status changes,
    deletes), plus every period of the run's days (vars start_date/end_date: a backfill rebuilds them). -#}
{% macro changed_order_periods(period) -%}
    select distinct {{ period }} as period
    from {{ ref('int_orders_history') }}
    where processed_at > {{ watermark('processed_at') }}
    {%- if var('start_date', none) and var('end_date', none) %}
       or (order_ts >= cast('{{ var("start_date") }}' as timestamptz)
           and order_ts < cast('{{ var("end_date") }}' as timestamptz))
    {%- endif %}
{%- endmacro %}


{#- The rows of a silver model written since this model's last run (all of them in a full build). -#}
{% macro rewritten_since_last_run(relation) -%}
    select * from {{ relation }}
    {%- if is_incremental() %}
    where processed_at > {{ watermark('processed_at') }}
    {%- endif %}
{%- endmacro %}
