-- Current state of public.customers from its change stream (see macros/cdc.sql).
{{ cdc_current('customers') }}
