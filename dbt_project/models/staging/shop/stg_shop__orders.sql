-- One typed row per Debezium change event of public.orders (see macros/cdc.sql).
{{ stg_cdc('orders') }}
