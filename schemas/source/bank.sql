-- The demo source database (PostgreSQL with logical replication): customers and accounts change
-- over time, transactions are facts that reference accounts. REPLICA IDENTITY FULL gives
-- Debezium full `before` images (deletes keep their last values in the warehouse either way).
CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    city        text NOT NULL,
    tier        text NOT NULL DEFAULT 'standard',
    status      text NOT NULL DEFAULT 'active',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE customers REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS accounts (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    currency     char(3) NOT NULL DEFAULT 'EUR',
    balance      numeric(14, 2) NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'open',
    opened_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE accounts REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS transactions (
    id          bigint PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    amount      numeric(14, 2) NOT NULL,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (id, name, email, city, tier)
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com',
       (ARRAY['Lisbon', 'Porto', 'Madrid', 'Paris', 'Berlin'])[1 + i % 5],
       (ARRAY['standard', 'silver', 'gold'])[1 + i % 3]
FROM generate_series(1, 100) AS i
ON CONFLICT (id) DO NOTHING;

INSERT INTO accounts (id, customer_id, balance)
SELECT i, 1 + (i - 1) % 100, 100 * i
FROM generate_series(1, 150) AS i
ON CONFLICT (id) DO NOTHING;
