{#-
  The change-data-capture logic shared by the seven shop entities (see shop_tables.sql for their columns).

  stg_cdc(table)         staging: one typed row per Debezium change event (c, u, d, r) or truncate (t);
                         the events that cannot be one go to silver.rejects (cdc_checked_changes)
  cdc_versions(table)    CTEs: the de-duplicated, ordered, TOAST-filled change stream of one entity
  cdc_history(table)     intermediate: SCD2 versions (valid_from, valid_to, is_current)
  cdc_current(table)     intermediate: current state, the open version of each key in history (deletes
                         and truncates close versions, so removed keys have none)

  All are incremental (macros/incremental.sql): staging appends the bronze rows ingested since its last
  run; history recomputes only the keys those rows touch (every key after a truncate) from the key's
  whole change stream and MERGEs them; current MERGEs the keys history rewrote since its own last run.
-#}

{% macro stg_cdc(table) %}
{{ config(incremental_strategy='append') }}
-- depends_on: {{ ref('rejects') }} (rejects reads this model's watermark before this run moves it)
select * exclude (reject_columns, reject_reason)
from ({{ cdc_checked_changes(table, since=watermark('ingested_at') if is_incremental() else none) }})
where reject_reason is null
{% endmacro %}


{#-
  The change events of one shop table ingested after `since` (all if none), typed with casts that give
  NULL instead of failing, and why a row cannot be a row of its entity (reject_reason; null when it can).
  A change is rejected when its event comes from another connector, database or table than the topic's
  (when the event names them), its op is not a row change, it has no LSN or no primary key, its Kafka
  record key names another key, or a value does not fit its column's type (a cast that fails or that
  would lose digits). No value is ever copied into a reason: rows may hold personal data.
-#}
{% macro cdc_checked_changes(table, since=none, bronze=none) %}
{%- set spec = shop_table(table) -%}
{%- set key = spec.key -%}
{%- set key_index = (spec.columns | map(attribute=0) | list).index(key) + 1 -%}
{%- set origin = var('cdc_source_database') ~ '.public.' ~ table -%}
with

source as (

    select * from {{ bronze if bronze is not none else source('shop', 'cdc_' ~ table) }}
    where kind = 'change'
    {%- if since %}
      and ingested_at > {{ since }}
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
        ]) as row_values,
        json_extract_string(record_key, '$.{{ key }}') as record_key_value,
        lsn as raw_lsn
    from source

),

typed as (

    select
        {%- for name, type, field in spec.columns %}
        {{ cdc_safe_cast('row_values[' ~ loop.index ~ ']', type) }} as {{ name }},
        {%- endfor %}
        op as change_op,
        op = 'd' as is_delete,
        coalesce(unavailable_columns, []) as unavailable_columns,
        {{ cdc_safe_cast('raw_lsn', 'ubigint') }} as lsn,
        tx_id,
        source_ts,
        "partition" as kafka_partition,
        "offset" as kafka_offset,
        bronze_id as source_bronze_id,
        ingested_at,
        cast('{{ run_started_at }}' as timestamptz) as processed_at,
        -- what the checks below read
        row_values,
        raw_lsn,
        record_key,
        record_key_value,
        source_connector,
        source_database,
        source_schema,
        source_table
    from extracted

),

checked as (

    select
        *,
        list_filter([
            {%- for name, type, field in spec.columns %}
            case when row_values[{{ loop.index }}] is not null and {{ name }} is null then '{{ name }}' end,
            {%- endfor %}
            case when raw_lsn is not null and lsn is null then 'lsn' end
        ], c -> c is not null) as uncast_columns,
        change_op <> 't' and row_values[{{ key_index }}] is null as key_missing,
        change_op <> 't' and record_key is not null
            and try_cast(record_key_value as uuid) is distinct from {{ key }} as key_disagrees,
        (source_connector is not null and source_connector <> 'postgresql')
            or (source_database is not null and source_database <> '{{ var("cdc_source_database") }}')
            or (source_schema is not null and source_schema <> 'public')
            or (source_table is not null and source_table <> '{{ table }}') as foreign_source
    from typed

),

final as (

    select
        * exclude (row_values, raw_lsn, record_key, record_key_value, source_connector, source_database,
                   source_schema, source_table, uncast_columns, key_missing, key_disagrees, foreign_source),
        list_distinct(uncast_columns
            || case when key_missing or key_disagrees then ['{{ key }}'] else [] end
            || case when raw_lsn is null then ['lsn'] else [] end
        ) as reject_columns,
        nullif(concat_ws('; ',
            case when foreign_source then
                'a change of ' || coalesce(source_connector, '?') || ' ' || coalesce(source_database, '?') || '.'
                || coalesce(source_schema, '?') || '.' || coalesce(source_table, '?')
                || ', not of postgresql {{ origin }}'
            end,
            case when change_op not in ('c', 'u', 'd', 'r', 't') or change_op is null then
                'op ' || coalesce(change_op, 'null') || ' is not a row change'
            end,
            case when raw_lsn is null then 'no LSN to order it by' end,
            case when key_missing then 'no primary key {{ key }}' end,
            case when key_disagrees then 'the Kafka record key names another {{ key }}' end,
            case when len(uncast_columns) > 0 then
                'values that do not fit their type: ' || array_to_string(list_transform(uncast_columns, c -> c || ' ' || case c
                    {%- for name, type, field in spec.columns %}
                    when '{{ name }}' then '{{ cdc_type_name(type) }}'
                    {%- endfor %}
                    else 'ubigint' end), ', ')
            end
        ), '') as reject_reason
    from checked

)

select * from final
{% endmacro %}


{#-
  The rejected change events of one shop table that silver.rejects does not hold yet (see
  models/staging/rejects.sql). Bronze is read by its relation, not source(): as a child of every bronze
  table, rejects would be skipped, and with it every staging model, when any one source test fails.
-#}
{% macro cdc_rejected_changes(table) %}
{%- set bronze = adapter.get_relation(this.database, 'bronze', 'cdc_' ~ table) -%}
{%- if bronze is none %}
{#- at parse time, or before the topic's first ingest -#}
select null::varchar as bronze_id, null::varchar as source_table, null::varchar as model,
       null::varchar[] as reject_columns, null::varchar as reason, null::timestamptz as ingested_at,
       null::timestamptz as rejected_at
where false
{%- else -%}
{%- set since = none -%}
{%- if is_incremental() -%}
  {%- set staged = adapter.get_relation(this.database, 'silver', 'stg_shop__' ~ table) -%}
  {#- what staging has taken in is behind both tables; what this table holds of the topic, behind it -#}
  {%- set since = timestamp_literal(run_query_value(
        "select cast(greatest("
        ~ ("(select max(ingested_at) from " ~ staged ~ ")" if staged else "'-infinity'::timestamptz")
        ~ ", (select coalesce(max(ingested_at), '-infinity'::timestamptz) from " ~ this
        ~ " where source_table = 'bronze.cdc_" ~ table ~ "')) as varchar)")) -%}
{%- endif %}
select
    source_bronze_id as bronze_id,
    'bronze.cdc_{{ table }}' as source_table,
    'stg_shop__{{ table }}' as model,
    reject_columns,
    reject_reason as reason,
    ingested_at,
    processed_at as rejected_at
from ({{ cdc_checked_changes(table, since=since, bronze=bronze) }})
where reject_reason is not null
{%- endif %}
{% endmacro %}


{#-
  A cast that gives NULL when the value does not fit: it fails, or (decimals, integers) it would round.
  An enum type ('enum:A,B') keeps its listed values only; char(n) values lose their blank padding.
  Rounding is found without DECIMAL(38, x): DuckDB parses text into it ~170 times slower than into
  DECIMAL(18, x) or DOUBLE (4 µs a value; it made staging 10x slower). Integers must be written as
  integers; a decimal of up to 15 digits is compared with the DOUBLE of its text, which holds 15
  significant digits exactly.
-#}
{% macro cdc_safe_cast(value, type) -%}
  {%- if type == 'char' -%}
    rtrim({{ value }}, ' ')
  {%- elif type.startswith('enum:') -%}
    case when {{ value }} in ({% for v in type[5:].split(',') %}'{{ v }}'{{ ", " if not loop.last }}{% endfor %}) then {{ value }} end
  {%- elif type in ('integer', 'bigint', 'ubigint') -%}
    case when regexp_full_match({{ value }}, '\s*[+-]?[0-9]+\s*') then try_cast({{ value }} as {{ type }}) end
  {%- elif type.startswith('decimal') and type[8:].split(',')[0] | int <= 15 -%}
    case when try_cast({{ value }} as double) = try_cast({{ value }} as {{ type }})
        then try_cast({{ value }} as {{ type }}) end
  {%- elif type.startswith('decimal') -%}
    case when try_cast({{ value }} as decimal(38, 10)) = try_cast({{ value }} as {{ type }})
        then try_cast({{ value }} as {{ type }}) end
  {%- else -%}
    try_cast({{ value }} as {{ type }})
  {%- endif -%}
{%- endmacro %}

{#- The type a reject reason names: enums by their values. -#}
{% macro cdc_type_name(type) -%}
  {{ 'one of ' ~ type[5:] if type.startswith('enum:') else type }}
{%- endmacro %}


{#- The earliest ingest and source time of any change of a key with changes past `since` (a staging
    timestamp), as constants for the incremental history (cdc_versions, cdc_history): staging appends in
    ingest order and history is partitioned by the day a version began, so the scans below them skip
    everything older. A truncate past `since` touches every key: no bound. -#}
{% macro cdc_touched_bounds(table, since) %}
{%- set key = shop_table(table).key -%}
{%- set staged = ref('stg_shop__' ~ table) -%}
{%- if not execute or in_unit_test() -%}
  {{ return({'ingested_at': "'-infinity'::timestamptz", 'valid_from_date': "'-infinity'::date"}) }}
{%- endif -%}
{%- set bounds = run_query(
    "with new_changes as (select " ~ key ~ ", change_op from " ~ staged ~ " where ingested_at > " ~ since ~ ")"
    ~ " select cast(min(ingested_at) as varchar), cast(min(" ~ utc_date('source_ts') ~ ") as varchar),"
    ~ " (select count(*) > 0 from new_changes where change_op = 't')"
    ~ " from " ~ staged ~ " where " ~ key ~ " in (select " ~ key ~ " from new_changes)").rows[0] -%}
{%- if bounds[2] -%}
  {{ return({'ingested_at': "'-infinity'::timestamptz", 'valid_from_date': "'-infinity'::date"}) }}
{%- endif -%}
{#- no new changes: bounds after every row, so nothing is read -#}
{{ return({
    'ingested_at': timestamp_literal(bounds[0]) if bounds[0] is not none else "'infinity'::timestamptz",
    'valid_from_date': "'" ~ bounds[1] ~ "'::date" if bounds[1] is not none else "'infinity'::date",
}) }}
{% endmacro %}


{#- The UTC calendar day of a timestamptz: the partition silver and gold lay versions out by. -#}
{% macro utc_date(column) -%}
  cast(timezone('UTC', {{ column }}) as date)
{%- endmacro %}


{#- CTEs `versions` (every change of every key, in order, with what follows it) and `truncates`. -#}
{% macro cdc_versions(table, since=none, bounds=none) %}
{%- set spec = shop_table(table) -%}
{%- set key = spec.key -%}
{%- if is_incremental() %}
new_changes as (

    select {{ key }}, change_op from {{ ref('stg_shop__' ~ table) }}
    where ingested_at > {{ since }}

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
      and ingested_at >= {{ bounds.ingested_at }}
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

resnapshotted_keys as (

    -- keys read by a snapshot after they had changes: Debezium re-snapshots every row after a connector
    -- reset or an incremental snapshot. Only these pay for the window below.
    select {{ key }} from toast_filled
    group by {{ key }}
    having count(*) filter (where change_op = 'r') > 0 and count(*) > 1

),

real_changes as (

    select toast_filled.* from toast_filled
    anti join resnapshotted_keys using ({{ key }})

    union all by name

    -- a snapshot read of a row as it already was is no change: it must not open a new version
    select toast_filled.* from toast_filled
    semi join resnapshotted_keys using ({{ key }})
    window previous as (partition by {{ key }} order by lsn, kafka_offset)
    qualify change_op <> 'r'
        or lag(change_op) over previous = 'd'
        or lag(struct_pack({% for name, type, field in spec.columns %}{{ name }}{{ ", " if not loop.last }}{% endfor %})) over previous
           is distinct from struct_pack({% for name, type, field in spec.columns %}{{ name }}{{ ", " if not loop.last }}{% endfor %})

),

ordered as (

    select
        *,
        lead(source_ts) over next_change as next_change_at,
        lead(lsn) over next_change as next_change_lsn
    from real_changes
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


{#- Current state, partitioned like history by the UTC day each key's open version began
    (last_changed_date). An incremental run rebuilds the partitions of the days whose versions history
    rewrote since this model's last run: a key that changed leaves the partition of its old version
    (rewritten, since history closed it) and enters today's; a deleted key leaves only. -#}
{% macro cdc_current(table) %}
{%- set spec = shop_table(table) -%}
{%- set key = spec.key -%}
{{ config(incremental_strategy='replace_partitions', partition_by=['last_changed_date'], delete_flag='is_removed') }}
{%- set history = ref('int_' ~ table ~ '_history') -%}
{%- if is_incremental() -%}
  {%- set days = partition_days(history, 'valid_from_date', 'processed_at > ' ~ watermark('processed_at')) -%}
{%- endif %}
with

open_versions as (

    -- the change stream is ordered once, in history; a key's current state is its open version
    select *, false as is_removed from {{ history }}
    where is_current
    {%- if is_incremental() %}
      and valid_from_date in ({{ days }})
    {%- endif %}

),

latest as (

    select * from open_versions
    {%- if is_incremental() %}
    union all by name
    -- every day rebuilt, even one left without a key: a flagged row names it and is not stored
    select valid_from_date, true as is_removed
    from {{ history }}
    where valid_from_date in ({{ days }})
    group by valid_from_date
    {%- endif %}

),

final as (

    select
        {%- for name, type, field in spec.columns %}
        {{ name }},
        {%- endfor %}
        valid_from as last_changed_at,
        valid_from_date as last_changed_date,
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
{#- partitioned by the UTC day a version began: a run's changes (new versions, and the versions they
    close) sit in the few days its keys last changed, and the MERGE rewrites only those -#}
{{ config(incremental_strategy='merge', unique_key=['valid_from_date', 'history_key'],
          partition_by=['valid_from_date']) }}
{%- if is_incremental() -%}
  {%- set since = watermark('source_ingested_at') -%}
  {%- set bounds = cdc_touched_bounds(table, since) -%}
{%- endif %}
with

{{ cdc_versions(table, since, bounds) }},

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
        {{ utc_date('source_ts') }} as valid_from_date,
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
    left join (select * from {{ this }} where valid_from_date >= {{ bounds.valid_from_date }}) as stored
        on stored.history_key = final.history_key
    where stored.history_key is null
       or ({% for c in compared %}final.{{ c }}{{ ", " if not loop.last }}{% endfor %})
          is distinct from ({% for c in compared %}stored.{{ c }}{{ ", " if not loop.last }}{% endfor %})

)

select * from changed
{%- else %}

select * from final
{%- endif %}
{% endmacro %}
