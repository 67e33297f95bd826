-- OLTP schema of the simulated shop (schema `public`), captured by Debezium.
-- Idempotent: the stack applies it before Debezium starts, and applying it again changes nothing.
-- Every table carries the same audit columns; `version` starts at 1 and the services increment it on
-- each UPDATE, so CDC consumers can order changes of one key without trusting clocks.

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'order_status' AND n.nspname = 'public'
    ) THEN
        CREATE TYPE public.order_status AS ENUM ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED');
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS public.customers (
    customer_id      uuid PRIMARY KEY,
    email            text NOT NULL UNIQUE,
    first_name       text NOT NULL,
    last_name        text NOT NULL,
    phone            text,
    country          char(2) NOT NULL,
    city             text,
    marketing_opt_in boolean NOT NULL DEFAULT false,
    registered_at    timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    created_by       text NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text NOT NULL,
    version          integer NOT NULL DEFAULT 1,
    deleted_at       timestamptz,
    deleted_by       text
);

CREATE TABLE IF NOT EXISTS public.products (
    product_id  uuid PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text NOT NULL,
    brand       text NOT NULL,
    price       numeric(12,2) NOT NULL CHECK (price >= 0),
    cost        numeric(12,2) NOT NULL CHECK (cost >= 0),
    is_active   boolean NOT NULL DEFAULT true,
    attributes  jsonb,
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    updated_at  timestamptz NOT NULL,
    updated_by  text NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    deleted_at  timestamptz,
    deleted_by  text
);

CREATE TABLE IF NOT EXISTS public.inventory (
    inventory_id      uuid PRIMARY KEY,
    product_id        uuid NOT NULL REFERENCES public.products (product_id),
    warehouse_code    text NOT NULL,
    quantity_on_hand  integer NOT NULL,
    quantity_reserved integer NOT NULL DEFAULT 0,
    reorder_point     integer NOT NULL,
    created_at        timestamptz NOT NULL,
    created_by        text NOT NULL,
    updated_at        timestamptz NOT NULL,
    updated_by        text NOT NULL,
    version           integer NOT NULL DEFAULT 1,
    deleted_at        timestamptz,
    deleted_by        text,
    UNIQUE (product_id, warehouse_code)
);

CREATE TABLE IF NOT EXISTS public.orders (
    order_id         uuid PRIMARY KEY,
    customer_id      uuid NOT NULL REFERENCES public.customers (customer_id),
    status           public.order_status NOT NULL,
    order_ts         timestamptz NOT NULL,
    subtotal         numeric(12,2) NOT NULL,
    discount_amount  numeric(12,2) NOT NULL,
    tax_amount       numeric(12,2) NOT NULL,
    shipping_amount  numeric(12,2) NOT NULL,
    total_amount     numeric(12,2) NOT NULL,
    currency         char(3) NOT NULL,
    shipping_address jsonb,
    created_at       timestamptz NOT NULL,
    created_by       text NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text NOT NULL,
    version          integer NOT NULL DEFAULT 1,
    deleted_at       timestamptz,
    deleted_by       text
);

CREATE TABLE IF NOT EXISTS public.order_items (
    order_item_id   uuid PRIMARY KEY,
    order_id        uuid NOT NULL REFERENCES public.orders (order_id),
    product_id      uuid NOT NULL REFERENCES public.products (product_id),
    quantity        integer NOT NULL CHECK (quantity > 0),
    unit_price      numeric(12,2) NOT NULL,
    discount_amount numeric(12,2) NOT NULL DEFAULT 0,
    line_total      numeric(12,2) NOT NULL,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    updated_at      timestamptz NOT NULL,
    updated_by      text NOT NULL,
    version         integer NOT NULL DEFAULT 1,
    deleted_at      timestamptz,
    deleted_by      text
);

CREATE TABLE IF NOT EXISTS public.payments (
    payment_id   uuid PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES public.orders (order_id),
    method       text NOT NULL CHECK (method IN ('card', 'paypal', 'bank_transfer', 'gift_card')),
    status       text NOT NULL CHECK (status IN ('AUTHORIZED', 'CAPTURED', 'FAILED', 'REFUNDED')),
    amount       numeric(12,2) NOT NULL,
    currency     char(3) NOT NULL,
    provider_ref text,
    processed_at timestamptz,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    updated_at   timestamptz NOT NULL,
    updated_by   text NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    deleted_at   timestamptz,
    deleted_by   text
);

CREATE TABLE IF NOT EXISTS public.shipments (
    shipment_id     uuid PRIMARY KEY,
    order_id        uuid NOT NULL REFERENCES public.orders (order_id),
    carrier         text NOT NULL,
    tracking_number text,
    status          text NOT NULL CHECK (status IN ('PENDING', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED', 'RETURNED')),
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    updated_at      timestamptz NOT NULL,
    updated_by      text NOT NULL,
    version         integer NOT NULL DEFAULT 1,
    deleted_at      timestamptz,
    deleted_by      text
);

CREATE INDEX IF NOT EXISTS inventory_product_id_idx ON public.inventory (product_id);
CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
CREATE INDEX IF NOT EXISTS orders_order_ts_idx ON public.orders (order_ts);
CREATE INDEX IF NOT EXISTS order_items_order_id_idx ON public.order_items (order_id);
CREATE INDEX IF NOT EXISTS order_items_product_id_idx ON public.order_items (product_id);
CREATE INDEX IF NOT EXISTS payments_order_id_idx ON public.payments (order_id);
CREATE INDEX IF NOT EXISTS shipments_order_id_idx ON public.shipments (order_id);
