{#-
  Materialize a model as a Delta table under the lake root (<lake_root>/<schema>/<model>).
  The model's SQL becomes a staging view; the `lakehouse_delta` plugin runs it and streams the rows as
  Arrow batches into Delta with delta-rs (never copied into a DuckDB table first: that would cost a
  full copy in memory), then replaces the model's relation with a view over the Delta table, so
  downstream models and analysts read Delta, never the scratch DuckDB catalog.

  Incremental models, once their table exists (see is_incremental.sql), add their rows in one Delta
  commit instead of replacing the table, and make no commit when they have none:
  - incremental_strategy='merge' + unique_key: MERGE (update matched keys, insert new ones). With
    config delete_flag='<boolean column>', rows flagged true delete their key instead; the flag column
    itself is never stored. When the unique_key holds partition columns, the MERGE reads and rewrites
    only the partitions the rows name.
  - incremental_strategy='replace_partitions' + partition_by: every partition a row names is replaced
    by the rows given (delta-rs's replaceWhere); a row flagged by delete_flag only names a partition.
  - incremental_strategy='append': for immutable rows (one per change event) selected past a watermark.
  `dbt build --full-refresh` rebuilds from scratch.

  config partition_by=['<column>', ...] lays the table out in Delta partitions when it is (re)built.
  Copy-on-write rewrites whole files, so incremental runs stay O(change) only if the rows a run touches
  sit in few partitions: silver and gold partition by the day a version began (docs/decisions.md).
-#}
{% materialization delta, adapter="duckdb" %}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set staging_relation = make_intermediate_relation(this.incorporate(type='view'), suffix='__dbt_stage') -%}
  {%- set incremental = is_incremental() -%}
  {{ drop_relation_if_exists(load_cached_relation(staging_relation)) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ create_view_as(staging_relation, sql) }}
  {%- endcall %}
  {{ adapter.commit() }}

  {#- the plugin runs the staging view on its own cursor: it must be committed first -#}
  {% do store_relation('lakehouse_delta', staging_relation, this.identifier, 'delta', {
      'schema': this.schema,
      'alias': this.identifier,
      'mode': config.get('incremental_strategy') if incremental else 'overwrite',
      'unique_key': config.get('unique_key'),
      'delete_flag': config.get('delete_flag'),
      'partition_by': config.get('partition_by'),
  }) %}
  {% do adapter.cache_added(target_relation) %}
  {{ drop_relation_if_exists(staging_relation) }}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {% do persist_docs(target_relation, model) %}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
