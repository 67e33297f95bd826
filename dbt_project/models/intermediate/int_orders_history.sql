-- SCD2 history of public.orders from its change stream (see macros/cdc.sql).
{{ cdc_history('orders') }}
