-- Current state of public.inventory from its change stream (see macros/cdc.sql).
{{ cdc_current('inventory') }}
