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
