-- Current state of public.orders from its change stream (see macros/cdc.sql).
{{ cdc_current('orders') }}
