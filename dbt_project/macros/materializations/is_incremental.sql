{#-
  dbt's is_incremental() only knows the built-in `incremental` materialization. Ours is `delta`: a model
  is incremental when it asks for merges, appends or partition replacements, its Delta table exists (the
  plugin exposes it as a view), and the run is not a --full-refresh.
-#}
{% macro is_incremental() %}
  {#- unit tests have no `this`: they are not incremental unless they override this macro -#}
  {%- if not execute or this is none -%}
    {{ return(false) }}
  {%- endif -%}
  {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
  {{ return(
      existing is not none
      and model.config.materialized == 'delta'
      and model.config.get('incremental_strategy') in ('merge', 'append', 'replace_partitions')
      and not should_full_refresh()
  ) }}
{% endmacro %}
