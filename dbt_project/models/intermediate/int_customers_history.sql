-- SCD2 history of public.customers from its change stream (see macros/cdc.sql).
{{ cdc_history('customers') }}
