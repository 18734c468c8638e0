-- A sample orders table, the shape logyard's [orders] mapping expects by default.
-- `logyard-bench gen --orders orders.csv` writes rows whose ids and customer ids match the
-- generated storefront logs; load them with scripts/orders/load.sh.
CREATE TABLE IF NOT EXISTS orders (
    id          text PRIMARY KEY,            -- o-0000001, as in the logs' order_id
    customer_id text,                        -- c-000123, as in the logs; NULL for guests
    status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled', 'refunded')),
    amount      numeric(12,2) NOT NULL,
    currency    char(3) NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at);
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id);
