-- One typed row per Debezium change event of public.products (see macros/cdc.sql).
{{ stg_cdc('products') }}
