{#-
  The model's Great Expectations suite from quality/rules.yml, run right after dbt built the model by the
  SQL function the lakehouse dbt plugin provides (pipelines/transform/dbt_delta_plugin.py). One row per
  failed ERROR-severity rule: a failure stops every model downstream in `dbt build`. WARNING and INFO
  failures are stored in quality/results and reported in Dagster, and block nothing.
-#}
{% test gx_suite(model) %}
select unnest(lakehouse_quality_suite('{{ model.schema }}.{{ model.identifier }}', '{{ invocation_id }}')) as failed_rule
{% endtest %}
