{#-
  Incremental runs read only what changed since the model's last run. The watermark is the newest value
  of a column the model itself stored: rows upstream with a later value are new. Deleted rows leave the
  table, so a watermark may step back: the rows behind it are processed again, which changes nothing.
-#}
{% macro watermark(column) -%}
  (select coalesce(max({{ column }}), '-infinity'::timestamptz) from {{ this }})
{%- endmacro %}
