-- One typed row per business event: current bronze event rows, de-duplicated by eventId (a service may
-- write the same event into two objects, or an object under two keys).
-- Incremental: appends the events of bronze rows ingested since the last run whose eventId it does not
-- have yet. bronze/events has concurrent writers (days ingest in parallel) that stamp ingested_at before
-- they commit, so a batch may land after rows stamped later were staged: the run looks back
-- var events_commit_lag_minutes before its watermark, and the staged eventIds keep that re-read harmless.
-- An S3 object rewritten with different content for the same events, or without some of them, keeps the
-- first content here until `dbt build --full-refresh --select stg_events__events+`.
{{ config(incremental_strategy='append') }}
with

source as (

    select * from {{ source('events', 'events') }}
    where row_kind = 'event' and superseded_at is null
    {%- if is_incremental() %}
      and ingested_at > {{ watermark('ingested_at') }} - interval '{{ var("events_commit_lag_minutes") }} minutes'
      and lower(event_id) not in (select cast(event_id as varchar) from {{ this }})
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
        ingested_at
    from deduplicated

)

select * from renamed
