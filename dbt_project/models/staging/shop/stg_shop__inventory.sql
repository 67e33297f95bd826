-- One typed row per Debezium change event of public.inventory (see macros/cdc.sql).
{{ stg_cdc('inventory') }}
