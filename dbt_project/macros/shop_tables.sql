{#-
  The shop's OLTP tables as silver sees them, in one place: key, typed columns (in source order, with
  `version` renamed row_version) and the row-level quality checks of their current and historical
  versions. Staging casts with these types; the CDC macros (cdc.sql) fill TOASTed columns and compute
  the quality columns from them. Types follow STYLE.md: ids uuid, money decimal(12,2), times timestamptz.
  Two columns are renamed (`renamed`): `version` (a keyword in many SQL dialects) and payments'
  `processed_at`, which would collide with silver's lineage column of that name.
  `toast` marks variable-length columns Postgres may store out of line (TOAST): only those can arrive
  as Debezium's unavailable-value placeholder.
  Type `enum:A,B,...` marks a Postgres enum (public.order_status): silver keeps it as text and rejects a value
  outside the list (cdc.sql), as it rejects any value that does not fit its column's type.
  Type `char` marks Postgres char(n) columns: Debezium sends the stored, blank-padded value ('Z ' for
  'Z' in a char(2)); silver drops the padding, as Postgres does when it turns such a value into text.
-#}
{% macro shop_table_names() %}
  {{ return(shop_table_specs().keys() | list) }}
{% endmacro %}

{% macro shop_table_specs() %}
  {%- set money = 'decimal(12, 2)' -%}
  {%- set tables = {
    'customers': {
      'key': 'customer_id',
      'columns': [
        ('customer_id', 'uuid'), ('email', 'varchar'), ('first_name', 'varchar'), ('last_name', 'varchar'),
        ('phone', 'varchar'), ('country', 'char'), ('city', 'varchar'), ('marketing_opt_in', 'boolean'),
        ('registered_at', 'timestamptz'),
      ],
      'checks': {
        'email_format': "regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
        'country_iso2': "regexp_full_match(country, '[A-Z]{2}')",
        'name_present': "first_name <> '' and last_name <> ''",
        'registered_before_update': "registered_at <= updated_at",
      },
    },
    'products': {
      'key': 'product_id',
      'columns': [
        ('product_id', 'uuid'), ('sku', 'varchar'), ('name', 'varchar'), ('category', 'varchar'),
        ('brand', 'varchar'), ('price', money), ('cost', money), ('is_active', 'boolean'), ('attributes', 'json'),
      ],
      'checks': {
        'price_non_negative': "price >= 0",
        'cost_non_negative': "cost >= 0",
        'sku_present': "sku <> ''",
      },
    },
    'inventory': {
      'key': 'inventory_id',
      'columns': [
        ('inventory_id', 'uuid'), ('product_id', 'uuid'), ('warehouse_code', 'varchar'),
        ('quantity_on_hand', 'integer'), ('quantity_reserved', 'integer'), ('reorder_point', 'integer'),
      ],
      'checks': {
        'on_hand_non_negative': "quantity_on_hand >= 0",
        'reserved_non_negative': "quantity_reserved >= 0",
        'reserved_within_on_hand': "quantity_reserved <= quantity_on_hand",
      },
    },
    'orders': {
      'key': 'order_id',
      'columns': [
        ('order_id', 'uuid'), ('customer_id', 'uuid'),
        ('status', 'enum:PENDING,CONFIRMED,SHIPPED,DELIVERED,CANCELLED'), ('order_ts', 'timestamptz'),
        ('subtotal', money), ('discount_amount', money), ('tax_amount', money), ('shipping_amount', money),
        ('total_amount', money), ('currency', 'char'), ('shipping_address', 'json'),
      ],
      'checks': {
        'status_known': "status in ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')",
        'amounts_non_negative': "least(subtotal, discount_amount, tax_amount, shipping_amount, total_amount) >= 0",
        'total_adds_up': "total_amount = subtotal - discount_amount + tax_amount + shipping_amount",
        'currency_iso': "regexp_full_match(currency, '[A-Z]{3}')",
      },
    },
    'order_items': {
      'key': 'order_item_id',
      'columns': [
        ('order_item_id', 'uuid'), ('order_id', 'uuid'), ('product_id', 'uuid'), ('quantity', 'integer'),
        ('unit_price', money), ('discount_amount', money), ('line_total', money),
      ],
      'checks': {
        'quantity_positive': "quantity > 0",
        'line_total_adds_up': "line_total = quantity * unit_price - discount_amount",
        'unit_price_non_negative': "unit_price >= 0",
      },
    },
    'payments': {
      'key': 'payment_id',
      'columns': [
        ('payment_id', 'uuid'), ('order_id', 'uuid'), ('method', 'varchar'), ('status', 'varchar'),
        ('amount', money), ('currency', 'char'), ('provider_ref', 'varchar'), ('payment_processed_at', 'timestamptz'),
      ],
      'checks': {
        'status_known': "status in ('AUTHORIZED', 'CAPTURED', 'FAILED', 'REFUNDED')",
        'method_known': "method in ('card', 'paypal', 'bank_transfer', 'gift_card')",
        'amount_non_negative': "amount >= 0",
      },
    },
    'shipments': {
      'key': 'shipment_id',
      'columns': [
        ('shipment_id', 'uuid'), ('order_id', 'uuid'), ('carrier', 'varchar'), ('tracking_number', 'varchar'),
        ('status', 'varchar'), ('shipped_at', 'timestamptz'), ('delivered_at', 'timestamptz'),
      ],
      'checks': {
        'status_known': "status in ('PENDING', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED', 'RETURNED')",
        'delivered_after_shipped': "delivered_at is null or delivered_at >= shipped_at",
        'delivered_has_date': "status <> 'DELIVERED' or delivered_at is not null",
      },
    },
  } -%}
  {{ return(tables) }}
{% endmacro %}

{% macro shop_table(table) %}
  {%- set audit = [
      ('created_at', 'timestamptz'), ('created_by', 'varchar'), ('updated_at', 'timestamptz'),
      ('updated_by', 'varchar'), ('row_version', 'integer'), ('deleted_at', 'timestamptz'),
      ('deleted_by', 'varchar'),
  ] -%}
  {%- set tables = shop_table_specs() -%}
  {%- if table not in tables -%}
    {{ exceptions.raise_compiler_error("shop_table: unknown table " ~ table) }}
  {%- endif -%}
  {%- set spec = tables[table] -%}
  {%- set renamed = {'row_version': 'version', 'payment_processed_at': 'processed_at'} -%}
  {%- set columns = [] -%}
  {%- for name, type in spec['columns'] + audit -%}
    {%- do columns.append((name, type, renamed.get(name, name))) -%}
  {%- endfor -%}
  {{ return({
      'name': table,
      'key': spec['key'],
      'columns': columns,
      'toast': columns | selectattr(1, 'in', ['varchar', 'json']) | list,
      'checks': spec['checks'],
  }) }}
{% endmacro %}
