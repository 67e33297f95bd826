-- The change events bronze holds that cannot become a row of their entity, with the reason, from every
-- shop table (see cdc_checked_changes in macros/cdc.sql). Staging leaves them out; nothing downstream sees them.
{{ config(incremental_strategy='append') }}
{%- for table in shop_table_names() %}
select * from ({{ cdc_rejected_changes(table) }})
{{ "union all by name" if not loop.last }}
{%- endfor %}
