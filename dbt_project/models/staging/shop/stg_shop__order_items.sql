-- One typed row per Debezium change event of public.order_items (see macros/cdc.sql).
{{ stg_cdc('order_items') }}
