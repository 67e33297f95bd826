-- SCD2 history of public.order_items from its change stream (see macros/cdc.sql).
{{ cdc_history('order_items') }}
