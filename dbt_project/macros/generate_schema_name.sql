{#- Schemas are the lake's layers (silver, gold): use the configured name as is, no target prefix. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
