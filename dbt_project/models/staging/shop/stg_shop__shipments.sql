-- One typed row per Debezium change event of public.shipments (see macros/cdc.sql).
{{ stg_cdc('shipments') }}
