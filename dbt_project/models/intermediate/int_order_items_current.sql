-- Current state of public.order_items from its change stream (see macros/cdc.sql).
{{ cdc_current('order_items') }}
