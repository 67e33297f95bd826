-- SCD2 history of public.products from its change stream (see macros/cdc.sql).
{{ cdc_history('products') }}
