-- Current state of public.shipments from its change stream (see macros/cdc.sql).
{{ cdc_current('shipments') }}
