{#-
  A WARNING while the source table's newest Debezium schema (bronze.cdc_schemas) differs from what
  staging reads: one row per column added (bronze keeps it; silver does not have it yet), dropped
  (silver fills NULL) or retyped (silver types or rejects its values). Run by the lakehouse dbt plugin
  (pipelines/cdc/schema_drift.py); the Dagster check shows the lines.
-#}
{% test schema_drift(model, table) %}
{%- set fields = shop_table(table).columns | map(attribute=2) | list %}
select unnest(lakehouse_schema_drift('{{ table }}', [
    {%- for field in fields %}'{{ field }}'{{ ", " if not loop.last }}{% endfor -%}
])) as drift
{% endtest %}
