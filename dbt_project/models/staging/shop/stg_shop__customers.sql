-- One typed row per Debezium change event of public.customers (see macros/cdc.sql).
{{ stg_cdc('customers') }}
