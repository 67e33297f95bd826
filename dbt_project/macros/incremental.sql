{#-
  Incremental runs read only what changed since the model's last run. The watermark is the newest value
  of a column the model itself stored: rows upstream with a later value are new. Deleted rows leave the
  table, so a watermark may step back: the rows behind it are processed again, which changes nothing.
  It is read when the model compiles and written into its SQL as a constant: the Delta scans then skip
  every file whose statistics lie behind it, which a subquery would not let them do.
-#}
{% macro watermark(column, relation=none) -%}
  {%- set relation = relation if relation is not none else this -%}
  {%- if in_unit_test() -%}
    (select coalesce(max({{ column }}), '-infinity'::timestamptz) from {{ relation }})
  {%- else -%}
    {{ timestamp_literal(run_query_value('select cast(max(' ~ column ~ ') as varchar) from ' ~ relation)) }}
  {%- endif -%}
{%- endmacro %}


{#- A dbt unit test gives a model's inputs, `this` included, as CTEs: nothing can be queried while it
    compiles, so compile-time constants fall back to the subqueries they stand for. -#}
{% macro in_unit_test() -%}
  {{ return(model is mapping and model.get('resource_type') == 'unit_test') }}
{%- endmacro %}


{#- The one value a query returns (none at parse time, when nothing runs). -#}
{% macro run_query_value(sql) -%}
  {%- if not execute -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(run_query(sql).columns[0].values()[0]) }}
{%- endmacro %}


{#- The values of a partition column of `relation` in rows that meet `condition`, as constants for an
    `in (...)` that lets a Delta scan read only those partitions (a subquery in a dbt unit test). -#}
{% macro partition_days(relation, column, condition) -%}
  {%- set query = 'select distinct ' ~ column ~ ' from ' ~ relation ~ ' where ' ~ condition -%}
  {%- if not execute or in_unit_test() -%}
    {{ return(query) }}
  {%- endif -%}
  {{ return(date_list(run_query(query).columns[0].values())) }}
{%- endmacro %}


{#- SQL date constants, comma-separated (a never-matching null for none: `in ()` is not SQL). -#}
{% macro date_list(days) -%}
  {%- for day in days or [] -%}
    '{{ day }}'::date{{ ", " if not loop.last }}
  {%- else -%}
    null::date
  {%- endfor -%}
{%- endmacro %}


{#- A timestamptz constant; none (an empty table) is minus infinity, before every row. -#}
{% macro timestamp_literal(value) -%}
  {%- if value is none -%}
    '-infinity'::timestamptz
  {%- else -%}
    '{{ value }}'::timestamptz
  {%- endif -%}
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
