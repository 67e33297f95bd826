-- SCD2 history of public.payments from its change stream (see macros/cdc.sql).
{{ cdc_history('payments') }}
