{#- Exact mean of a money column, rounded half away from zero to cents. DuckDB divides DECIMALs as
    DOUBLE, so divide whole cents as integers instead. -#}
{% macro money_avg(total, n) -%}
  case when {{ n }} > 0 then
    (sign({{ total }}) * ((abs({{ total }} * 100)::hugeint * 2 + {{ n }}) // (2 * {{ n }})))::decimal(38, 0)::decimal(14, 2) / 100
  end::decimal(12, 2)
{%- endmacro %}

{#- A money value from a decoded Debezium row (exact digits as text) -#}
{% macro json_money(doc, field) -%}
  cast(json_extract_string({{ doc }}, '$.{{ field }}') as decimal(12, 2))
{%- endmacro %}

{#- count / total as an exact DECIMAL(7, 4) share, rounded half up; null when the total is 0. -#}
{% macro rate(count, total) -%}
  case when {{ total }} > 0 then
    cast((cast({{ count }} as hugeint) * 20000 + {{ total }}) // (2 * {{ total }}) as decimal(38, 0))::decimal(12, 0) / 10000
  end::decimal(7, 4)
{%- endmacro %}
