-- Current state of public.payments from its change stream (see macros/cdc.sql).
{{ cdc_current('payments') }}
