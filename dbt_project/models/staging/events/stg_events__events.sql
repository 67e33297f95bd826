-- One typed row per business event: current bronze event rows, de-duplicated by eventId (a service may
-- write the same event into two objects, or an object under two keys).
-- Incremental: re-derives the eventIds with a new current copy that could win, or with a copy superseded
-- by a rewrite of its object, since the last run, from all their current copies, and MERGEs them: an id
-- without a current copy left (its object was rewritten without it) is deleted, so the result equals a
-- full build.
-- bronze/events has concurrent writers (days ingest in parallel) that stamp ingested_at before they
-- commit, so a batch may land after rows stamped later were staged: the run looks back
-- var events_commit_lag_minutes before its watermark; re-deriving an id again changes nothing.
-- Partitioned by event_date, and MERGEd on it: delta-rs then reads only the days the run touches (a MERGE
-- on event_id alone read the whole table, 10 s for 8k new events among 850k).
{{ config(incremental_strategy='merge', unique_key=['event_date', 'event_id'], delete_flag='is_removed',
          partition_by=['event_date']) }}
{%- set events = source('events', 'events') %}
{%- if is_incremental() %}
  {#- constants, not subqueries, so that the Delta scans skip every file of older batches: bronze/events
      holds all events with their payloads (4.3M at the benchmark's 1M orders) -#}
  {%- set since = run_query(
        "select cast(coalesce(max(ingested_at), '-infinity'::timestamptz) - interval '"
        ~ var('events_commit_lag_minutes') ~ " minutes' as varchar) from " ~ this).columns[0].values()[0] %}
  {#- ids to re-derive: a recent current copy of an id not staged, or staged from a later copy (a batch
      committed late); and every id with a copy superseded since. A recent copy of an id staged from an
      earlier one changes nothing: re-deriving those would redo the whole look-back window every run -#}
  {%- set touched_ids %}
    select lower(recent.event_id) as id
    from {{ events }} as recent
    left join (select cast(event_id as varchar) as id, ingested_at from {{ this }}) as staged
        on staged.id = lower(recent.event_id)
    where recent.row_kind = 'event' and recent.superseded_at is null
      and recent.ingested_at > '{{ since }}'::timestamptz
      and (staged.id is null or recent.ingested_at < staged.ingested_at)
    union
    select lower(event_id) from {{ events }}
    where row_kind = 'event' and superseded_at > '{{ since }}'::timestamptz
  {%- endset %}
  {#- the first ingested current copy of a touched id is as old as they come: a repeat of an event staged
      long ago, usually none -#}
  {%- set earliest = run_query(
        "select cast(min(ingested_at) as varchar) from " ~ events ~ " where row_kind = 'event'"
        ~ " and superseded_at is null and lower(event_id) in (" ~ touched_ids ~ ")").columns[0].values()[0] %}
{%- endif %}
with

{%- if is_incremental() %}

touched as (

    {{ touched_ids }}

),
{%- endif %}

source as (

    select * from {{ events }}
    where row_kind = 'event' and superseded_at is null
    {%- if is_incremental() %}
      and {% if earliest is none %}false{% else %}ingested_at >= '{{ earliest }}'::timestamptz{% endif %}
      and lower(event_id) in (select id from touched)
    {%- endif %}

),

repeated_ids as (

    select lower(event_id) as id from source group by 1 having count(*) > 1

),

later_copies as (

    -- the first ingested copy wins; within a batch the first by object key and line (a batch reads its
    -- objects in key order), then bronze_id for rows written before line_number existed.
    -- Only repeated ids are ranked: ranking (or joining) every event costs as much as all the rest.
    select bronze_id from source
    semi join repeated_ids on lower(source.event_id) = repeated_ids.id
    qualify row_number() over (
        partition by lower(event_id) order by ingested_at, object_key, line_number, bronze_id
    ) > 1

),

deduplicated as (

    select source.* from source
    anti join later_copies using (bronze_id)

),

renamed as (

    select
        cast(event_id as uuid) as event_id,
        event_type,
        event_source,
        event_ts,
        cast(event_ts as date) as event_date,
        version as schema_version,
        cast(correlation_id as uuid) as correlation_id,
        cast(user_id as uuid) as user_id,
        cast(session_id as uuid) as session_id,
        cast(payload as json) as payload,
        cast(metadata as json) as metadata,
        envelope,
        environment,
        region,
        bronze_id as source_bronze_id,
        ingested_at,
        false as is_removed
    from deduplicated

)

select * from renamed
{%- if is_incremental() %}
-- the stored row of a touched id that has no current copy left (its object rewritten without it), or
-- whose first copy now falls on another day
union all by name
select stored.event_id, stored.event_date, true as is_removed
from {{ this }} as stored
semi join touched on touched.id = cast(stored.event_id as varchar)
anti join renamed on renamed.event_id = stored.event_id and renamed.event_date = stored.event_date
{%- endif %}
