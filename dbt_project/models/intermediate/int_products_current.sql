-- Current state of public.products from its change stream (see macros/cdc.sql).
{{ cdc_current('products') }}
