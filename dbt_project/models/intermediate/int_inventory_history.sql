-- SCD2 history of public.inventory from its change stream (see macros/cdc.sql).
{{ cdc_history('inventory') }}
