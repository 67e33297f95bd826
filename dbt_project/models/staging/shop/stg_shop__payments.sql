-- One typed row per Debezium change event of public.payments (see macros/cdc.sql).
{{ stg_cdc('payments') }}
