-- SCD2 history of public.shipments from its change stream (see macros/cdc.sql).
{{ cdc_history('shipments') }}
