{#-
  The change-data-capture logic shared by the seven shop entities (see shop_tables.sql for their columns).

  stg_cdc(table)         staging: one typed row per Debezium change event (c, u, d, r) or truncate (t)
  cdc_versions(table)    CTEs: the de-duplicated, ordered, TOAST-filled change stream of one entity
  cdc_history(table)     intermediate: SCD2 versions (valid_from, valid_to, is_current)
  cdc_current(table)     intermediate: current state, the open version of each key in history (deletes
                         and truncates close versions, so removed keys have none)

  All are incremental (macros/incremental.sql): staging appends the bronze rows ingested since its last
  run; history recomputes only the keys those rows touch (every key after a truncate) from the key's
  whole change stream and MERGEs them; current MERGEs the keys history rewrote since its own last run.
-#}

{% macro stg_cdc(table) %}
{%- set spec = shop_table(table) -%}
{{ config(incremental_strategy='append') }}
with

source as (

    select * from {{ source('shop', 'cdc_' ~ table) }}
    where kind = 'change' and op in ('c', 'u', 'd', 'r', 't')
    {%- if is_incremental() %}
      and ingested_at > {{ watermark('ingested_at') }}
    {%- endif %}

),

extracted as (

    -- one JSON parse per row for all columns; deletes carry their last state in `before`
    -- (REPLICA IDENTITY FULL); truncates carry no row
    select
        *,
        json_extract_string(coalesce(after, before), [
            {%- for name, type, field in spec.columns %}
            '$.{{ field }}'{{ "," if not loop.last }}
            {%- endfor %}
        ]) as row_values
    from source

),

renamed as (

    select
        {%- for name, type, field in spec.columns %}
        {%- if type == 'char' %}
        rtrim(row_values[{{ loop.index }}], ' ') as {{ name }},
        {%- else %}
        cast(row_values[{{ loop.index }}] as {{ type }}) as {{ name }},
        {%- endif %}
        {%- endfor %}
        op as change_op,
        op = 'd' as is_delete,
        coalesce(unavailable_columns, []) as unavailable_columns,
        cast(lsn as ubigint) as lsn,
        tx_id,
        source_ts,
        "partition" as kafka_partition,
        "offset" as kafka_offset,
        bronze_id as source_bronze_id,
        ingested_at
    from extracted

)

select * from renamed
{% endmacro %}


{#- CTEs `versions` (every change of every key, in order, with what follows it) and `truncates`. -#}
{% macro cdc_versions(table) %}
{%- set spec = shop_table(table) -%}
{%- set key = spec.key -%}
{%- if is_incremental() %}
new_changes as (

    select {{ key }}, change_op from {{ ref('stg_shop__' ~ table) }}
    where ingested_at > {{ watermark('source_ingested_at') }}

),

touched as (

    select distinct {{ key }} from new_changes
    where not exists (select 1 from new_changes where change_op = 't')
    union all
    -- a truncate touches every key
    select distinct {{ key }} from {{ ref('stg_shop__' ~ table) }}
    where exists (select 1 from new_changes where change_op = 't')

),
{%- endif %}

changes as (

    select * from {{ ref('stg_shop__' ~ table) }}
    where change_op <> 't'
    {%- if is_incremental() %}
      and {{ key }} in (select {{ key }} from touched)
    {%- endif %}

),

truncates as (

    select lsn as truncate_lsn, source_ts as truncated_at
    from {{ ref('stg_shop__' ~ table) }}
    where change_op = 't'

),

repeated_changes as (

    select {{ key }}, lsn, change_op from changes group by all having count(*) > 1

),

redeliveries as (

    -- a record redelivered (connector restart, producer retry) repeats key, LSN and op at a new offset;
    -- the first offset counts. Only repeated changes are ranked: ranking all would sort every whole row.
    select source_bronze_id from changes
    semi join repeated_changes using ({{ key }}, lsn, change_op)
    qualify row_number() over (partition by {{ key }}, lsn, change_op order by kafka_offset) > 1

),

deduplicated as materialized (

    select changes.* from changes
    anti join redeliveries using (source_bronze_id)

),

toasted_keys as (

    select distinct {{ key }} from deduplicated where len(unavailable_columns) > 0

),

toast_filled as (

    -- most keys never had a value withheld: only the others pay for the window below
    select deduplicated.* from deduplicated
    anti join toasted_keys using ({{ key }})

    union all by name

    -- an unchanged TOASTed value is not sent (unavailable_columns): it is the key's latest value that was
    select
        * replace (
            {%- for name, type, field in spec.toast %}
            case
                when list_contains(unavailable_columns, '{{ field }}')
                    then last_value(
                        case when not list_contains(unavailable_columns, '{{ field }}') then {{ name }} end
                        ignore nulls
                    ) over earlier
                else {{ name }}
            end as {{ name }}{{ "," if not loop.last }}
            {%- endfor %}
        )
    from deduplicated
    semi join toasted_keys using ({{ key }})
    window earlier as (
        partition by {{ key }} order by lsn, kafka_offset rows between unbounded preceding and 1 preceding
    )

),

ordered as (

    select
        *,
        lead(source_ts) over next_change as next_change_at,
        lead(lsn) over next_change as next_change_lsn
    from toast_filled
    window next_change as (partition by {{ key }} order by lsn, kafka_offset)

),

versions as (

    -- a truncate ends every version it finds alive: the first truncate after the version's LSN
    select ordered.*, truncates.truncate_lsn, truncates.truncated_at
    from ordered
    asof left join truncates on ordered.lsn < truncates.truncate_lsn

)
{%- endmacro %}


{#- Row-level quality columns from a table's checks: the score is the share of checks passed. -#}
{% macro quality_columns(table) %}
{%- set checks = shop_table(table).checks -%}
    cast(({{ checks | length }} - len(quality_issues)) / {{ checks | length }} as decimal(5, 4)) as data_quality_score,
    len(quality_issues) = 0 as quality_checks_passed,
    quality_issues
{%- endmacro %}

{% macro quality_issues(table) %}
{%- set checks = shop_table(table).checks -%}
    list_filter([
        {%- for name, condition in checks.items() %}
        case when coalesce({{ condition }}, false) then null else '{{ name }}' end{{ "," if not loop.last }}
        {%- endfor %}
    ], issue -> issue is not null)::varchar[]
{%- endmacro %}


{% macro lineage_columns() %}
    source_bronze_id,
    current_timestamp as processed_at,
    '{{ var("processing_version") }}' as processing_version
{%- endmacro %}


{% macro cdc_current(table) %}
{%- set spec = shop_table(table) -%}
{%- set key = spec.key -%}
{{ config(incremental_strategy='merge', unique_key=key, delete_flag='is_removed') }}
with

history as (

    -- the change stream is ordered once, in history; a key's current state is its open version
    select * from {{ ref('int_' ~ table ~ '_history') }}

),

{%- if is_incremental() %}

touched as (

    -- history rewrites every version of a key that changed: those keys, since this model's last run
    select distinct {{ key }} from history
    where processed_at > {{ watermark('processed_at') }}

),

latest as (

    -- a touched key without an open version was deleted or truncated: the MERGE deletes it (delete_flag)
    select touched.{{ key }}, open_versions.* exclude ({{ key }}), open_versions.{{ key }} is null as is_removed
    from touched
    left join (select * from history where is_current) as open_versions
        on open_versions.{{ key }} = touched.{{ key }}

),
{%- else %}

latest as (

    select *, false as is_removed from history where is_current

),
{%- endif %}

final as (

    select
        {%- for name, type, field in spec.columns %}
        {{ name }},
        {%- endfor %}
        valid_from as last_changed_at,
        source_lsn,
        data_quality_score,
        quality_checks_passed,
        quality_issues,
        source_bronze_id,
        current_timestamp as processed_at,
        processing_version,
        source_ingested_at,
        is_removed
    from latest

)

select * from final
{% endmacro %}


{% macro cdc_history(table) %}
{%- set spec = shop_table(table) -%}
{#- closed versions are (nearly) only ever inserted: in their own partition, MERGEs rarely rewrite them -#}
{{ config(incremental_strategy='merge', unique_key='history_key', partition_by=['is_current']) }}
with

{{ cdc_versions(table) }},

closed as (

    -- a version lasts until the key's next change (an update or a delete) or a truncate, whichever is first;
    -- deletes end a version and are not versions themselves
    select
        *,
        case
            when truncate_lsn is not null and (next_change_lsn is null or truncate_lsn < next_change_lsn)
                then truncated_at
            else next_change_at
        end as valid_to,
        {{ quality_issues(table) }} as quality_issues
    from versions
    where not is_delete

),

final as (

    select
        {{ spec.key }}::varchar || '@' || lsn::varchar as history_key,
        {%- for name, type, field in spec.columns %}
        {{ name }},
        {%- endfor %}
        source_ts as valid_from,
        valid_to,
        next_change_lsn is null and truncate_lsn is null as is_current,
        lsn as source_lsn,
        {{ quality_columns(table) }},
        {{ lineage_columns() }},
        ingested_at as source_ingested_at
    from closed

)
{%- if is_incremental() %},

changed as (

    -- a touched key's versions are recomputed whole, but most come out as stored: leave those out, since
    -- a MERGE rewrites every file that holds a matched row, and fct_/dim_ models pick up rewritten rows
    {%- set compared = ['valid_from', 'valid_to', 'is_current', 'source_lsn', 'data_quality_score', 'quality_issues',
                        'source_bronze_id', 'processing_version'] + spec.columns | map(attribute=0) | list %}
    select final.* from final
    left join {{ this }} as stored on stored.history_key = final.history_key
    where stored.history_key is null
       or ({% for c in compared %}final.{{ c }}{{ ", " if not loop.last }}{% endfor %})
          is distinct from ({% for c in compared %}stored.{{ c }}{{ ", " if not loop.last }}{% endfor %})

)

select * from changed
{%- else %}

select * from final
{%- endif %}
{% endmacro %}
