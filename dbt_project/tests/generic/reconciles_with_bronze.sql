{#-
  Nothing is lost between bronze and staging: every change event of the bronze table up to the newest
  one staging has taken in is either a staged row or a reject, never both, never neither. A row that
  fails this was skipped by a watermark (or staged twice): the model's children wait for a fix.
-#}
{% test reconciles_with_bronze(model, bronze_table) %}
{#- No ref() or source(): silver.rejects reads every bronze table and is built before every staging model,
    so with them dbt's indirect selection would run this test for staging models a run leaves out -#}
{%- set rejects = adapter.get_relation(model.database, 'silver', 'rejects') %}
{%- set bronze = adapter.get_relation(model.database, 'bronze', bronze_table) %}
with

rejected as (

    {%- if rejects is none %}
    -- a run of staging alone on a new lake: nothing was rejected yet
    select null::varchar as bronze_id, null::timestamptz as ingested_at where false
    {%- else %}
    select bronze_id, ingested_at from {{ rejects }} where source_table = 'bronze.{{ bronze_table }}'
    {%- endif %}

),

taken_in as (

    select greatest(
        (select coalesce(max(ingested_at), '-infinity'::timestamptz) from {{ model }}),
        (select coalesce(max(ingested_at), '-infinity'::timestamptz) from rejected)
    ) as until

),

counts as (

    select
        (select count(*) from {{ bronze }}
         where kind = 'change' and ingested_at <= (select until from taken_in)) as bronze_changes,
        (select count(*) from {{ model }}) as staged,
        (select count(*) from rejected) as rejected,
        (select count(*) from {{ model }} semi join rejected on source_bronze_id = bronze_id) as staged_and_rejected

)

select * from counts
where bronze_changes <> staged + rejected or staged_and_rejected > 0
{% endtest %}
