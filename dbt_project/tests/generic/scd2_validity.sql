{#-
  SCD2 validity of a history model, per key: versions do not overlap (a version ends at or before the
  next one's valid_from; an update ends it exactly there, while a delete or truncate leaves a gap until
  the key is inserted again), only the last version may be open (valid_to null), a version is current
  exactly when it is open, and valid_to never precedes valid_from. Returns the offending rows.
-#}
{% test scd2_validity(model, key) %}
with

ordered as (

    select
        {{ key }} as key,
        valid_from,
        valid_to,
        is_current,
        lead(valid_from) over next_version as next_valid_from
    from {{ model }}
    -- versions of one transaction share valid_from; the zero-length ones come first
    window next_version as (partition by {{ key }} order by valid_from, valid_to nulls last)

)

select *
from ordered
where (next_valid_from is not null and (valid_to is null or valid_to > next_valid_from))
   or (valid_to is null) <> is_current
   or valid_to < valid_from

{% endtest %}
